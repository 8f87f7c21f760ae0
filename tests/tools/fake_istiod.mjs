// fake-istiod: a stand-in for Istio's istiod in tests — delta xDS (AggregatedDiscoveryService.
// DeltaAggregatedResources) and the CA (IstioCertificateService.CreateCertificate) over TLS,
// written independently of zmesh (Node.js's gRPC stack, protobufjs encoding, openssl signing) so
// that tests check zmesh against the protocol rather than against itself.
//
//   node fake_istiod.mjs --listen HOST:PORT --tls-cert F --tls-key F --ca-cert F --ca-key F
//                        --scenario F --log F [--proto-dir DIR]
//
// Prints `fake-istiod listening on HOST:PORT` (the real port when PORT is 0) once serving.
// Scenario (JSON; re-read whenever it changes, a version that does not load is ignored):
//   {"resources": {"<type url>": [{"name": N, "version": V, "aliases": [...],
//                                  "address"|"authorization"|"resource": {...proto3 JSON...}
//                                  | "raw": "<base64 used verbatim as Any.value>"}]},
//    "requireToken": "T",   // every call needs metadata `authorization: Bearer T`
//    "ca": {"fail": false, "validitySeconds": null,
//           "signAs": "spiffe://..."}}  // a hostile CA: the leaf names this identity, not the one asked for
// The message key is the type's name with a lower-case first letter (or "resource"); field
// names may be snake_case or camelCase; `addresses`/`address` bytes may be IP text ("b64:" forces
// base64); a missing version is a hash of the encoding. Every event is one JSON line in --log.
import { createRequire } from 'node:module';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '../../.tools/node/node_modules/'));
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

// ---- command line ----------------------------------------------------------------------------
const usage = 'usage: fake_istiod.mjs --listen HOST:PORT --tls-cert F --tls-key F --ca-cert F ' +
  '--ca-key F --scenario F --log F [--proto-dir DIR]';
const fail = (message) => {
  process.stderr.write(`fake-istiod: ${message}\n${usage}\n`);
  process.exit(2);
};
const opts = {};
const known = ['listen', 'tls-cert', 'tls-key', 'ca-cert', 'ca-key', 'scenario', 'log', 'proto-dir'];
for (let i = 2; i < process.argv.length; i += 2) {
  const flag = process.argv[i].replace(/^--/, '');
  if (!process.argv[i].startsWith('--') || !known.includes(flag)) fail(`unknown argument ${process.argv[i]}`);
  if (i + 1 >= process.argv.length) fail(`${process.argv[i]} needs a value`);
  if (flag in opts) fail(`${process.argv[i]} given twice`);
  opts[flag] = process.argv[i + 1];
}
opts['proto-dir'] ??= path.join(here, '../../proto');
for (const flag of known) if (opts[flag] === undefined) fail(`--${flag} is required`);
const listen = /^(\[[0-9a-fA-F:.]+\]|[^:\[\]]+):(\d+)$/.exec(opts.listen);
if (!listen) fail(`--listen wants HOST:PORT (or [IPv6]:PORT), not ${opts.listen}`);
const readOrFail = (flag) => {
  try { return fs.readFileSync(opts[flag], 'utf8'); } catch (e) { return fail(`--${flag} ${opts[flag]}: ${e.message}`); }
};
const tlsCert = readOrFail('tls-cert');
const tlsKey = readOrFail('tls-key');
const caCertPem = readOrFail('ca-cert');
readOrFail('ca-key');  // openssl reads it per signing; fail now rather than at the first CSR
const caChain = caCertPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g);
if (!caChain) fail(`--ca-cert ${opts['ca-cert']}: no PEM certificate in it`);
try { fs.appendFileSync(opts.log, ''); } catch (e) { fail(`--log ${opts.log}: ${e.message}`); }

// Synchronous appends: a test reads the log while we run, and a crash must not lose lines.
const log = (fields) => fs.appendFileSync(opts.log, `${JSON.stringify({ ...fields, time: Date.now() })}\n`);

// ---- protos ----------------------------------------------------------------------------------
// proto-loader for the services (the objects gRPC passes), and a protobufjs Root of our own for
// encoding resources into Any values. google/protobuf/*.proto come bundled with protobufjs.
const protoDir = opts['proto-dir'];
let services, types;
try {
  const definition = protoLoader.loadSync(['xds.proto', 'citadel.proto'], {
    keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [protoDir],
  });
  services = grpc.loadPackageDefinition(definition);
  types = new protobuf.Root();
  types.resolvePath = (origin, target) => (path.isAbsolute(target) ? target : path.join(protoDir, target));
  types.loadSync(['workload.proto', 'authorization.proto'], { keepCase: true });
  types.resolveAll();
} catch (e) {
  fail(`--proto-dir ${protoDir}: ${e.message}`);
}

// ---- scenario --------------------------------------------------------------------------------
// 4 or 16 network-order bytes for IP text, null for anything else.
function ipBytes(text) {
  if (net.isIPv4(text)) return Buffer.from(text.split('.').map(Number));
  if (!net.isIPv6(text)) return null;
  const words = (part) => (part === '' ? [] : part.split(':').flatMap((group) => {
    if (!group.includes('.')) return [parseInt(group, 16)];
    const [a, b, c, d] = group.split('.').map(Number);  // an IPv4 tail such as ::ffff:1.2.3.4
    return [(a << 8) | b, (c << 8) | d];
  }));
  const [head, tail] = text.replace(/%.*$/, '').split('::');
  const front = words(head);
  const back = tail === undefined ? [] : words(tail);
  const all = [...front, ...Array(8 - front.length - back.length).fill(0), ...back];
  const out = Buffer.alloc(16);
  all.forEach((word, i) => out.writeUInt16BE(word, 2 * i));
  return out;
}

function bytesValue(field, value, where) {
  if (Array.isArray(value)) return Buffer.from(value);
  if (typeof value !== 'string') throw new Error(`${where}: bytes must be a string`);
  if (value.startsWith('b64:')) return Buffer.from(value.slice(4), 'base64');
  const ip = field.name === 'address' || field.name === 'addresses' ? ipBytes(value) : null;
  return ip ?? Buffer.from(value, 'base64');
}

const camel = (name) => name.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase());
const wrapperTypes = /^\.?google\.protobuf\.(U?Int(32|64)|Double|Float|Bool|String|Bytes)Value$/;

// Rewrites proto3 JSON (either field-name spelling) into what fromObject() of a keepCase Root
// takes, converting IP text to bytes. Strict on purpose: fromObject() silently drops unknown
// fields and unknown enum names, and a test whose typo vanishes tests nothing.
function normalize(type, object, where) {
  if (object === null || typeof object !== 'object' || Array.isArray(object)) {
    throw new Error(`${where}: a ${type.fullName.slice(1)} must be a JSON object`);
  }
  const out = {};
  for (const [key, value] of Object.entries(object)) {
    const field = type.fields[key] ?? Object.values(type.fields).find((f) => camel(f.name) === key);
    if (!field) throw new Error(`${where}: ${type.fullName.slice(1)} has no field "${key}"`);
    if (value === null) continue;  // proto3 JSON: the default
    field.resolve();
    const one = (v, at) => {
      const sub = field.resolvedType;
      if (sub instanceof protobuf.Type) {
        const wrapped = wrapperTypes.test(sub.fullName) && (v === null || typeof v !== 'object');
        return normalize(sub, wrapped ? { value: v } : v, at);
      }
      if (sub instanceof protobuf.Enum && typeof v === 'string' && !(v in sub.values)) {
        throw new Error(`${at}: "${v}" is not one of ${Object.keys(sub.values).join(', ')}`);
      }
      return field.type === 'bytes' ? bytesValue(field, v, at) : v;
    };
    const at = `${where}.${key}`;
    if (field.map) out[field.name] = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, one(v, `${at}.${k}`)]));
    else if (field.repeated) out[field.name] = [].concat(value).map((v, i) => one(v, `${at}[${i}]`));
    else out[field.name] = one(value, at);
  }
  return out;
}

const allowedKeys = (object, keys, where) => {
  for (const key of Object.keys(object ?? {})) if (!keys.includes(key)) throw new Error(`${where}: unknown key "${key}"`);
};

// The scenario as served: per type URL, name -> {version, resource (a Resource for the wire)}.
function buildScenario(json, generation) {
  allowedKeys(json, ['resources', 'requireToken', 'ca'], 'scenario');
  allowedKeys(json.ca, ['fail', 'validitySeconds', 'signAs'], 'scenario.ca');
  const byType = new Map();
  let count = 0;
  for (const [typeUrl, entries] of Object.entries(json.resources ?? {})) {
    const typeName = typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
    const type = types.lookup(typeName);
    const key = typeName.slice(typeName.lastIndexOf('.') + 1).replace(/^./, (c) => c.toLowerCase());
    const named = new Map();
    for (const [i, entry] of (entries ?? []).entries()) {
      const where = `${typeName}[${i}]`;
      allowedKeys(entry, ['name', 'version', 'aliases', 'raw', key, 'resource'], where);
      if (typeof entry.name !== 'string' || !entry.name) throw new Error(`${where}: needs a name`);
      if (named.has(entry.name)) throw new Error(`${where}: "${entry.name}" appears twice`);
      let value;
      if (entry.raw !== undefined) value = Buffer.from(entry.raw, 'base64');
      else if (!(type instanceof protobuf.Type)) throw new Error(`${where}: no proto for ${typeUrl}, only "raw" works`);
      else value = Buffer.from(type.encode(type.fromObject(normalize(type, entry[key] ?? entry.resource ?? {}, where))).finish());
      const version = String(entry.version ?? crypto.createHash('sha256').update(value).digest('hex').slice(0, 12));
      named.set(entry.name, {
        version,
        resource: { name: entry.name, version, aliases: entry.aliases ?? [], resource: { type_url: typeUrl, value } },
      });
      count++;
    }
    byType.set(typeUrl, named);
  }
  return { generation, byType, count, requireToken: json.requireToken ?? null, ca: json.ca ?? {} };
}

let scenario;
let scenarioText;
let scenarioKey;     // inode/size/mtime of the file scenarioText came from
let lastBadText;     // so a broken file is reported once, not every 50 ms
let lastError = 'cannot be read';

// Loads the file if it changed; false when it does not load (then the old scenario stays).
function reloadScenario() {
  let key, text;
  try {
    const st = fs.statSync(opts.scenario);
    key = `${st.ino}:${st.size}:${st.mtimeMs}`;
    if (key === scenarioKey) return true;
    text = fs.readFileSync(opts.scenario, 'utf8');
  } catch (e) {
    lastError = e.message;
    return false;  // mid-replacement; the next poll retries
  }
  if (text === scenarioText) {
    scenarioKey = key;
    return true;
  }
  try {
    scenario = buildScenario(JSON.parse(text), (scenario?.generation ?? 0) + 1);
  } catch (e) {
    // Left unrecorded (scenarioKey unchanged), so a half-written file is read again next poll.
    if (text !== lastBadText) log({ event: 'scenario-error', error: e.message });
    lastBadText = text;
    lastError = e.message;
    return false;
  }
  scenarioText = text;
  scenarioKey = key;
  log({ event: 'scenario', generation: scenario.generation, resources: scenario.count });
  for (const stream of streams) for (const typeUrl of stream.subs.keys()) push(stream, typeUrl, false);
  return true;
}

// ---- delta xDS -------------------------------------------------------------------------------
const streams = new Set();
let nextStreamId = 1;
let nextNonce = 1;

const metadataOf = (md) => {
  const out = { authorization: null, clusterid: null };
  for (const [k, v] of Object.entries(md.getMap())) if (!k.endsWith('-bin')) out[k] = String(v);
  return out;
};
const authorized = (md) => !scenario.requireToken || md.get('authorization')[0] === `Bearer ${scenario.requireToken}`;

function plainValue(v) {
  switch (v?.kind) {
    case 'stringValue': case 'numberValue': case 'boolValue': return v[v.kind];
    case 'structValue': return plainStruct(v.structValue);
    case 'listValue': return (v.listValue.values ?? []).map(plainValue);
    default: return null;
  }
}
function plainStruct(s) {
  return s ? Object.fromEntries(Object.entries(s.fields ?? {}).map(([k, v]) => [k, plainValue(v)])) : null;
}

// Sends what the client lacks of one type: resources it does not have at the current version,
// and removals of those it has that are gone. Only a stream's first response for a type goes
// out empty — that is how a client learns it is in sync.
function push(stream, typeUrl, first) {
  const sub = stream.subs.get(typeUrl);
  const wanted = (name) => sub.names === null || sub.names.has(name);
  const current = [...(scenario.byType.get(typeUrl) ?? new Map())].filter(([name]) => wanted(name));
  const resources = current.filter(([name, r]) => sub.sent.get(name) !== r.version).map(([, r]) => r.resource);
  const live = new Set(current.map(([name]) => name));
  const removed = [...sub.sent.keys()].filter((name) => !live.has(name));
  if (stream.closed || (!first && resources.length === 0 && removed.length === 0)) return;
  sub.sent = new Map(current.map(([name, r]) => [name, r.version]));
  sub.nonce = String(nextNonce++);
  stream.call.write({
    system_version_info: String(scenario.generation), type_url: typeUrl, nonce: sub.nonce, resources, removed_resources: removed,
  });
  log({
    event: 'response', stream: stream.id, type_url: typeUrl, nonce: sub.nonce,
    resources: resources.map((r) => r.name), removed,
  });
}

function onRequest(stream, req) {
  const typeUrl = req.type_url;
  const sub = stream.subs.get(typeUrl);
  const nonce = req.response_nonce;
  // Like istiod: the first request for a type on a stream is answered even if it carries a
  // nonce (a client that reconnected); later ones with a nonce are ACKs/NACKs, never answered.
  const kind = !sub ? 'subscribe' : nonce ? (req.error_detail ? 'nack' : 'ack') : 'update';
  log({
    event: 'request', stream: stream.id, type_url: typeUrl, kind, nonce,
    ack: nonce ? !req.error_detail : null, stale: Boolean(sub && nonce && nonce !== sub.nonce),
    error_detail: req.error_detail ? { code: req.error_detail.code, message: req.error_detail.message } : null,
    initial_resource_versions: req.initial_resource_versions, subscribe: req.resource_names_subscribe,
    unsubscribe: req.resource_names_unsubscribe,
    node: req.node ? { id: req.node.id, cluster: req.node.cluster, metadata: plainStruct(req.node.metadata) } : null,
  });
  const names = req.resource_names_subscribe;
  if (!sub) {
    // Empty or "*": wildcard (what ztunnel asks for); otherwise only the names asked for.
    const wildcard = names.length === 0 || names.includes('*');
    stream.subs.set(typeUrl, {
      names: wildcard ? null : new Set(names), sent: new Map(Object.entries(req.initial_resource_versions)), nonce: null,
    });
    push(stream, typeUrl, true);
  } else if (kind === 'update' && sub.names !== null) {
    // On-demand (re)subscription by name: forget what was sent so a re-subscribed name is sent again.
    for (const name of [...names, ...req.resource_names_unsubscribe]) sub.sent.delete(name);
    for (const name of names) sub.names.add(name);
    for (const name of req.resource_names_unsubscribe) sub.names.delete(name);
    push(stream, typeUrl, false);
  }
}

function closeStream(stream, reason) {
  if (stream.closed) return;
  stream.closed = true;
  streams.delete(stream);
  log({ event: 'stream-close', stream: stream.id, reason });
}

function deltaAggregatedResources(call) {
  const stream = { id: nextStreamId++, call, subs: new Map(), closed: false };
  log({ event: 'stream-open', stream: stream.id, peer: call.getPeer(), metadata: metadataOf(call.metadata) });
  if (!authorized(call.metadata)) {
    closeStream(stream, 'unauthenticated');
    call.emit('error', { code: grpc.status.UNAUTHENTICATED, details: 'authorization: bad or missing token' });
    return;
  }
  streams.add(stream);
  call.on('data', (req) => onRequest(stream, req));
  // A client's cancel also ends the input, with 'cancelled' just behind; and once we end the
  // call grpc-js reports 'cancelled' too. So wait briefly, settle the reason, then end (OK), as
  // istiod does when a client half-closes.
  call.on('end', () => setTimeout(() => {
    closeStream(stream, 'client half-closed');
    call.end();
  }, 20));
  call.on('cancelled', () => closeStream(stream, 'cancelled'));
  call.on('error', (e) => closeStream(stream, `error: ${e.message}`));
}

// ---- CA --------------------------------------------------------------------------------------
const run = (args, cwd) => new Promise((resolve, reject) => {
  execFile('openssl', args, { cwd }, (err, stdout, stderr) => {
    if (err) reject(new Error(stderr.trim() || err.message));
    else resolve(stdout);
  });
});
const asn1Time = (seconds) => new Date(seconds * 1000).toISOString().replace(/[-:T]|\.\d+/g, '');
const grpcError = (code, details) => Object.assign(new Error(details), { code, details });

// `openssl ca` rather than `openssl x509 -req`: OpenSSL 3.0's x509 only counts validity in days,
// and certificate-rotation tests need leaves that expire in seconds. Its database is per call,
// in a fresh directory, so concurrent requests do not share state. Extensions follow istiod's
// workload certificates; with an impersonated identity the SAN is that identity (critical, as
// istiod sets it) and the CSR's own SAN is ignored, otherwise the CSR's SAN is copied.
async function issue(dir, identity, seconds) {
  fs.writeFileSync(path.join(dir, 'index.txt'), '');
  fs.writeFileSync(path.join(dir, 'serial'), crypto.randomBytes(16).toString('hex'));
  fs.writeFileSync(path.join(dir, 'ca.cnf'), [
    '[ca]', 'default_ca = fake', '[fake]', 'database = index.txt', 'serial = serial', 'new_certs_dir = .',
    'default_md = sha256', 'policy = any', 'unique_subject = no', 'copy_extensions = copy', 'x509_extensions = leaf',
    '[any]', '[leaf]', 'basicConstraints = critical,CA:FALSE', 'keyUsage = critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage = serverAuth,clientAuth', 'authorityKeyIdentifier = keyid',
    ...(identity ? [`subjectAltName = critical,URI:${identity}`] : []), '',
  ].join('\n'));
  const now = Math.floor(Date.now() / 1000);
  await run(['ca', '-batch', '-notext', '-preserveDN', '-config', 'ca.cnf', '-cert', path.resolve(opts['ca-cert']),
    '-keyfile', path.resolve(opts['ca-key']), '-in', 'csr.pem', '-out', 'leaf.pem',
    '-startdate', asn1Time(now), '-enddate', asn1Time(now + seconds)], dir);
  return fs.readFileSync(path.join(dir, 'leaf.pem'), 'utf8');
}

async function createCertificate(call, callback) {
  const req = call.request;
  const identity = plainStruct(req.metadata)?.ImpersonatedIdentity ?? null;
  const record = {
    event: 'csr', authorization: call.metadata.get('authorization')[0] ?? null, identity, san: [],
    validity_duration: Number(req.validity_duration), ok: false, error: null,
  };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-istiod-'));
  try {
    if (!authorized(call.metadata)) throw grpcError(grpc.status.UNAUTHENTICATED, 'authorization: bad or missing token');
    fs.writeFileSync(path.join(dir, 'csr.pem'), req.csr);
    let text;
    try {
      text = await run(['req', '-in', 'csr.pem', '-noout', '-text', '-verify'], dir);
    } catch (e) {
      throw grpcError(grpc.status.INVALID_ARGUMENT, `csr does not parse: ${e.message.split('\n')[0]}`);
    }
    const lines = text.split('\n');
    const at = lines.findIndex((l) => l.includes('X509v3 Subject Alternative Name'));
    if (at >= 0) record.san = [...lines[at + 1].matchAll(/URI:([^,\s]+)/g)].map((m) => m[1]);
    if (identity !== null && !/^[\w.~%!$&'()*+;=:@/-]+$/.test(identity)) {
      throw grpcError(grpc.status.INVALID_ARGUMENT, 'ImpersonatedIdentity is not a URI');
    }
    if (scenario.ca.fail) throw grpcError(grpc.status.UNAVAILABLE, 'ca refused (scenario)');
    // istiod: the requested TTL, 24 h when none; the scenario may override it.
    const seconds = Number(scenario.ca.validitySeconds ?? (record.validity_duration > 0 ? record.validity_duration : 86400));
    record.issued_seconds = seconds;
    const leaf = await issue(dir, scenario.ca.signAs ?? identity, seconds);
    record.ok = true;
    callback(null, { cert_chain: [leaf, ...caChain] });
  } catch (e) {
    record.error = e.details ?? e.message;
    callback({ code: e.code ?? grpc.status.INTERNAL, details: record.error });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    log(record);
  }
}

// ---- serve -----------------------------------------------------------------------------------
if (!reloadScenario()) fail(`--scenario ${opts.scenario}: ${lastError}`);
setInterval(reloadScenario, 50);
try {
  // The directory, not the file: an atomic rename replaces the file's inode.
  fs.watch(path.dirname(path.resolve(opts.scenario)), (_, name) => {
    if (!name || name === path.basename(opts.scenario)) reloadScenario();
  }).on('error', () => {});  // polling covers it
} catch { /* polling covers it */ }

const server = new grpc.Server();
server.addService(services.envoy.service.discovery.v3.AggregatedDiscoveryService.service, {
  DeltaAggregatedResources: deltaAggregatedResources,
});
server.addService(services.istio.v1.auth.IstioCertificateService.service, { CreateCertificate: createCertificate });
const credentials = grpc.ServerCredentials.createSsl(
  null, [{ cert_chain: Buffer.from(tlsCert), private_key: Buffer.from(tlsKey) }], false);  // no client certificate
server.bindAsync(`${listen[1]}:${listen[2]}`, credentials, (err, port) => {
  if (err) {
    process.stderr.write(`fake-istiod: cannot listen on ${opts.listen}: ${err.message}\n`);
    process.exit(2);
  }
  log({ event: 'listening', address: `${listen[1]}:${port}` });
  process.stdout.write(`fake-istiod listening on ${listen[1]}:${port}\n`);
});

// Open streams end with UNAVAILABLE (a status a client treats as "reconnect"), not a bare reset.
const stop = (signal) => {
  for (const stream of [...streams]) {
    closeStream(stream, `server stopped (${signal})`);
    stream.call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'fake-istiod shutting down' });
  }
  server.tryShutdown(() => process.exit(0));
  setTimeout(() => {
    server.forceShutdown();
    process.exit(0);
  }, 500).unref();
};
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
