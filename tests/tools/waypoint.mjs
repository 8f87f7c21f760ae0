// waypoint: a stand-in for an Istio waypoint, on Node.js's own http2 (independent of nghttp2 and
// of zmeshd's code), for the waypoint tests (issue 17).
//   node waypoint.mjs --listen IP:PORT --cert F --key F --ca F --log FILE
//                     [--route TARGET=IP:PORT]...   (where a CONNECT target is sent; default: itself)
// It accepts HBONE (TLS 1.3, ALPN h2, a client certificate of the mesh required), records each
// CONNECT (one JSON line in the log: target, the client's SPIFFE id), and carries the stream on
// over HBONE to the destination pod's node (IP:15008, CONNECT IP:PORT) with its own certificate,
// as a waypoint does after its L7 work. The destination's answer status is passed back.
// Prints "waypoint listening" once it accepts.
import fs from 'node:fs';
import http2 from 'node:http2';

const args = { route: [] };
for (let i = 2; i < process.argv.length; i += 2) {
  const key = process.argv[i].replace(/^--/, '');
  if (key === 'route') args.route.push(process.argv[i + 1]);
  else args[key] = process.argv[i + 1];
}
const routes = new Map(args.route.map((r) => r.split('=')));
const tls = { cert: fs.readFileSync(args.cert), key: fs.readFileSync(args.key), ca: fs.readFileSync(args.ca) };
const split = (hostport) =>
  hostport.startsWith('[')
    ? [hostport.slice(1, hostport.indexOf(']')), hostport.slice(hostport.indexOf(']') + 2)]
    : hostport.split(':');
const record = (fields) => fs.appendFileSync(args.log, JSON.stringify(fields) + '\n');
const uriOf = (cert) => (cert?.subjectaltname ?? '').split(', ').find((s) => s.startsWith('URI:'))?.slice(4) ?? '';

const server = http2.createSecureServer({
  ...tls,
  requestCert: true,
  rejectUnauthorized: true,
  minVersion: 'TLSv1.3',
  ALPNProtocols: ['h2'],
});
server.on('stream', (stream, headers) => {
  const target = headers[':authority'];
  const client = uriOf(stream.session.socket.getPeerCertificate());
  if (headers[':method'] !== 'CONNECT') {
    record({ target, client, error: `method ${headers[':method']}` });
    stream.respond({ ':status': 400 }, { endStream: true });
    return;
  }
  const next = routes.get(target) ?? target;
  const [host] = split(next);
  record({ target, client, next });
  const upstream = http2.connect(`https://${host.includes(':') ? `[${host}]` : host}:15008`, {
    ...tls,
    minVersion: 'TLSv1.3',
    ALPNProtocols: ['h2'],
    checkServerIdentity: () => undefined, // SPIFFE: the identity is in the URI SAN
  });
  const fail = (status) => {
    if (!stream.headersSent) stream.respond({ ':status': status }, { endStream: true });
    else stream.close(http2.constants.NGHTTP2_CONNECT_ERROR);
    upstream.close();
  };
  upstream.on('error', () => fail(503));
  const request = upstream.request({ ':method': 'CONNECT', ':authority': next });
  request.on('error', () => fail(503));
  request.on('response', (answer) => {
    const status = answer[':status'];
    if (status !== 200) return fail(status);
    stream.respond({ ':status': 200 });
    stream.pipe(request);
    request.pipe(stream);
    request.on('close', () => upstream.close());
  });
  stream.on('error', () => upstream.close());
});
const [host, port] = split(args.listen);
server.listen(Number(port), host, () => console.log('waypoint listening'));
