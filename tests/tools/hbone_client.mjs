// hbone-client: an HBONE client built on Node.js's own http2 module (an HTTP/2 implementation
// independent of nghttp2), for testing that zmeshd speaks the protocol and not just to itself.
//   node hbone_client.mjs --connect IP:PORT --authority IP:PORT [--cert F --key F] --ca F [--bytes N]
//                         [--forwarded VALUE]   (a `forwarded` header, as a client node sends it)
// (without --cert/--key it presents no client certificate, which zmeshd must refuse)
// Opens TLS 1.3 (ALPN h2) with the given workload certificate, sends CONNECT, and if the answer
// is 200 sends N pattern bytes, half-closes, and checks the echo. Prints one JSON line:
// {"status":..., "sent":..., "received":..., "match":..., "error":...}; exit 0 only on a full echo.
import fs from 'node:fs';
import http2 from 'node:http2';

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const bytes = Number(args.bytes ?? 65536);
const pattern = (i) => Number((BigInt(i) * 2654435761n) >> 13n) & 0xff;
const report = (fields, code) => {
  console.log(JSON.stringify(fields));
  process.exit(code);
};
setTimeout(() => report({ error: 'timed out after 20 s' }, 4), 20000).unref();

const [host, port] = args.connect.startsWith('[')
  ? [args.connect.slice(1, args.connect.indexOf(']')), args.connect.slice(args.connect.indexOf(']') + 2)]
  : args.connect.split(':');
const session = http2.connect(`https://${host.includes(':') ? `[${host}]` : host}:${port}`, {
  ...(args.cert ? { cert: fs.readFileSync(args.cert), key: fs.readFileSync(args.key) } : {}),
  ca: fs.readFileSync(args.ca),
  minVersion: 'TLSv1.3',
  ALPNProtocols: ['h2'],
  // SPIFFE: the identity is in the URI SAN, there is no host name to check.
  checkServerIdentity: () => undefined,
});
session.on('error', (e) => report({ error: `session: ${e.code ?? ''} ${e.message}` }, 3));

const request = session.request({
  ':method': 'CONNECT',
  ':authority': args.authority,
  ...(args.forwarded !== undefined ? { forwarded: args.forwarded } : {}),
});
request.on('error', (e) => report({ error: `stream: ${e.code ?? ''} ${e.message}` }, 3));
request.on('response', (headers) => {
  const status = headers[':status'];
  if (status !== 200) {
    request.on('close', () => report({ status }, 1));
    request.resume();
    return;
  }
  const out = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) out[i] = pattern(i);
  request.end(out);
  let received = 0;
  let match = true;
  request.on('data', (chunk) => {
    for (let i = 0; i < chunk.length; i++) if (chunk[i] !== pattern(received + i)) match = false;
    received += chunk.length;
  });
  request.on('end', () => {
    session.close();
    match = match && received === bytes;
    report({ status, sent: bytes, received, match }, match ? 0 : 1);
  });
});
