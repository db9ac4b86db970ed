// Interop of our HPKE/EHBP (common/hpke.h, common/ehbp.h, driven through
// ehbp_interop_peer) with independent JavaScript implementations:
//
//   ehbp 0.1.7        tinfoilsh's EHBP client (Identity.encryptRequestWithContext,
//                     Identity.decryptResponseWithContext, deriveResponseKeys,
//                     encryptChunk, decryptChunk): its own request encryption,
//                     response decryption and framing.
//   hpke 1.1.7        panva's RFC 9180 (with @panva/hpke-noble 1.0.3 primitives),
//                     the HPKE that ehbp uses; here also the EHBP *server* side,
//                     which the ehbp package does not ship (framing written from
//                     the EHBP SPEC §4.3).
//   @hpke/core 1.9.0  hpke-js (dajiaji), with @hpke/dhkem-x25519 1.8.0 (pure-JS
//                     X25519): a second, unrelated HPKE for raw single-shot tests.
//
// Usage: node ehbp_interop.mjs --peer PATH/TO/ehbp_interop_peer
// Run by ctest (ehbp_interop) through run_interop.sh. Prints one line per
// check and exits 1 when any fails.
//
// Node 18 (Debian bookworm's nodejs) has no global `crypto` in modules; the
// libraries (and @noble, which reads it when loaded) need
// crypto.getRandomValues, so it is set from node:crypto before they are
// imported (dynamically, below).
import { webcrypto, randomBytes } from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';

if (!globalThis.crypto) globalThis.crypto = webcrypto;

const here = path.dirname(fileURLToPath(import.meta.url));
const INSTALL_HINT = 'run scripts/install-node-deps.sh';

// ---- environment: node_modules present and exactly what package-lock.json pins

function fail(message) {
  console.error(`ehbp_interop: FAIL: ${message}`);
  process.exit(1);
}

function checkInstalledPackages() {
  const lock = JSON.parse(fs.readFileSync(path.join(here, 'package-lock.json'), 'utf8'));
  for (const [where, entry] of Object.entries(lock.packages)) {
    if (!where.startsWith('node_modules/')) continue;
    const manifest = path.join(here, where, 'package.json');
    if (!fs.existsSync(manifest)) fail(`${where} is missing; ${INSTALL_HINT}`);
    const version = JSON.parse(fs.readFileSync(manifest, 'utf8')).version;
    if (version !== entry.version) {
      fail(`${where} is ${version}, package-lock.json pins ${entry.version}; ${INSTALL_HINT}`);
    }
  }
}

const args = process.argv.slice(2);
const peerIndex = args.indexOf('--peer');
if (peerIndex < 0 || !args[peerIndex + 1]) fail('usage: node ehbp_interop.mjs --peer PATH/TO/ehbp_interop_peer');
const PEER = path.resolve(args[peerIndex + 1]);
if (!fs.existsSync(PEER)) fail(`peer ${PEER} does not exist (build the target ehbp_interop_peer)`);
if (!fs.existsSync(path.join(here, 'node_modules'))) fail(`${path.join(here, 'node_modules')} is missing; ${INSTALL_HINT}`);
checkInstalledPackages();

const ehbp = await import('ehbp');
const panva = await import('hpke');
const noble = await import('@panva/hpke-noble');
const hpkejs = await import('@hpke/core');
const { DhkemX25519HkdfSha256: HpkeJsX25519 } = await import('@hpke/dhkem-x25519');

// ---- helpers

const te = new TextEncoder();
const hex = (b) => Buffer.from(b instanceof ArrayBuffer ? new Uint8Array(b) : b).toString('hex');
const unhex = (h) => new Uint8Array(Buffer.from(h, 'hex'));
const bytes = (b) => new Uint8Array(b instanceof ArrayBuffer ? b : b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
const sameBytes = (actual, expected, what) => {
  const a = Buffer.from(actual), e = Buffer.from(expected);
  if (!a.equals(e)) {
    let i = 0;
    while (i < a.length && i < e.length && a[i] === e[i]) ++i;
    assert.fail(`${what}: ${a.length} bytes, expected ${e.length}; first difference at byte ${i}`);
  }
};
const LOWER_HEX_64 = /^[0-9a-f]{64}$/;
const CHUNK = 64 * 1024;

const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ehbp-interop-'));
let fileCounter = 0;
function tmpFile(name, data) {
  const p = path.join(workDir, `${++fileCounter}-${name}`);
  if (data !== undefined) fs.writeFileSync(p, data);
  return p;
}

// Runs the peer to completion; returns its JSON output. `expectFailure`:
// returns stderr instead and asserts exit status 1.
function peer(argv, { expectFailure = false } = {}) {
  const r = spawnSync(PEER, argv, { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.error) throw r.error;
  if (expectFailure) {
    assert.equal(r.status, 1, `peer ${argv[0]} was expected to fail; stdout: ${r.stdout}`);
    return r.stderr;
  }
  if (r.status !== 0) assert.fail(`peer ${argv[0]} exited ${r.status}: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout);
}

// Parses an EHBP body (SPEC §4.3: LEN u32 big-endian || LEN ciphertext bytes,
// LEN = 0 frames skipped, no terminator) into its ciphertext frames.
function parseFrames(body) {
  const frames = [];
  let off = 0;
  while (off < body.length) {
    assert.ok(off + 4 <= body.length, `truncated length prefix at byte ${off}`);
    const len = new DataView(body.buffer, body.byteOffset + off, 4).getUint32(0, false);
    off += 4;
    assert.ok(off + len <= body.length, `truncated frame at byte ${off}`);
    if (len > 0) frames.push(body.subarray(off, off + len));
    off += len;
  }
  return frames;
}

function frame(ct) {
  const out = new Uint8Array(4 + ct.length);
  new DataView(out.buffer).setUint32(0, ct.length, false);
  out.set(ct, 4);
  return out;
}

function concat(parts) {
  return new Uint8Array(Buffer.concat(parts.map((p) => Buffer.from(p))));
}

// Our framing choice (ehbp.h): ceil(n / chunk) frames, each chunk + 16 bytes,
// the last one shorter; an empty reply is no frame at all.
function expectOurFrameLayout(frames, plaintextLength, chunkSize) {
  const expected = [];
  for (let left = plaintextLength; left > 0; left -= chunkSize) expected.push(Math.min(left, chunkSize) + 16);
  assert.deepEqual(frames.map((f) => f.length), expected, 'frame lengths');
}

// A body as a stream delivered in `piece`-byte reads, so the ehbp decrypt
// stream has to reassemble frames split across reads.
function streamOf(body, piece) {
  return new ReadableStream({
    start(controller) {
      for (let off = 0; off < body.length; off += piece) controller.enqueue(body.slice(off, off + piece));
      controller.close();
    },
  });
}

async function readAll(response) {
  return new Uint8Array(await response.arrayBuffer());
}

const panvaSuite = (aead = noble.AEAD_AES_256_GCM) =>
  new panva.CipherSuite(noble.KEM_DHKEM_X25519_HKDF_SHA256, noble.KDF_HKDF_SHA256, aead);
const hpkejsSuite = (aead = new hpkejs.Aes256Gcm()) =>
  new hpkejs.CipherSuite({ kem: new HpkeJsX25519(), kdf: new hpkejs.HkdfSha256(), aead });

const SMALL_REQUEST = te.encode(JSON.stringify({
  inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }],
}));
const SMALL_REPLY = te.encode(JSON.stringify({ model_name: 'm', outputs: [{ name: 'y', shape: [1, 2], datatype: 'FP32', data: [0.25, 0.75] }] }));
const BIG_REQUEST = new Uint8Array(randomBytes(3 * CHUNK + 17));  // > 64 KiB: several frames
const BIG_REPLY = new Uint8Array(randomBytes(2 * CHUNK + 5));

// ---- the checks

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

// 1. JS client (ehbp) -> C++ server -> C++ reply -> JS client (ehbp).
async function ehbpClientToCppServer({ keys, request, reply, chunkSize, piece }) {
  const identity = await ehbp.Identity.fromPublicKeyHex(keys.pk);
  const { request: encrypted, context } = await identity.encryptRequestWithContext(
    new Request('http://enclave.invalid/v2/models/m/infer', {
      method: 'POST', body: request, headers: { 'Content-Type': 'application/json' }, duplex: 'half',
    }));
  assert.ok(context, 'ehbp made no HPKE context for a request with a body');
  const enc = encrypted.headers.get('Ehbp-Encapsulated-Key');
  assert.match(enc, LOWER_HEX_64, 'Ehbp-Encapsulated-Key from ehbp');
  const body = await readAll(encrypted);
  // ehbp 0.1.7 seals the whole request as one frame.
  assert.deepEqual(parseFrames(body).map((f) => f.length), [request.length + 16], 'ehbp request frames');

  const plaintextOut = tmpFile('request.plain');
  const replyOut = tmpFile('reply.body');
  const out = peer(['server', '--sk', keys.sk, '--enc', enc, '--body', tmpFile('request.body', body),
    '--plaintext-out', plaintextOut, '--reply', tmpFile('reply.plain', reply), '--reply-out', replyOut,
    ...(chunkSize ? ['--chunk-size', String(chunkSize)] : [])]);
  sameBytes(fs.readFileSync(plaintextOut), request, 'request decrypted by C++');
  assert.match(out.response_nonce, LOWER_HEX_64, 'Ehbp-Response-Nonce from C++');
  const replyBody = new Uint8Array(fs.readFileSync(replyOut));
  expectOurFrameLayout(parseFrames(replyBody), reply.length, chunkSize ?? CHUNK);

  const response = new Response(streamOf(replyBody, piece ?? replyBody.length + 1), {
    status: 200, headers: { 'Ehbp-Response-Nonce': out.response_nonce },
  });
  const decrypted = await readAll(await identity.decryptResponseWithContext(response, context));
  sameBytes(decrypted, reply, 'reply decrypted by ehbp');
  return { body, enc, replyBody, nonce: out.response_nonce, identity, context, keys };
}

test('ehbp client -> C++ server: small request, small reply (C++ key pair)', async () => {
  await ehbpClientToCppServer({ keys: peer(['keygen']), request: SMALL_REQUEST, reply: SMALL_REPLY });
});

test('ehbp client -> C++ server: 192 KiB request (one ehbp frame), 128 KiB reply in 3 frames read in 1000-byte pieces', async () => {
  await ehbpClientToCppServer({ keys: peer(['keygen']), request: BIG_REQUEST, reply: BIG_REPLY, piece: 1000 });
});

test('ehbp client -> C++ server: reply in 1000-byte frames (132 frames), empty reply (no frame)', async () => {
  const keys = peer(['keygen']);
  await ehbpClientToCppServer({ keys, request: SMALL_REQUEST, reply: BIG_REPLY.subarray(0, 131017), chunkSize: 1000, piece: 4093 });
  await ehbpClientToCppServer({ keys, request: SMALL_REQUEST, reply: new Uint8Array(0) });
});

test('ehbp client -> C++ server with a key pair made by ehbp (Identity.generate)', async () => {
  const identity = await ehbp.Identity.generate();
  const json = JSON.parse(await identity.toJSON());
  const keys = { sk: hex(Uint8Array.from(json.privateKey)), pk: hex(Uint8Array.from(json.publicKey)) };
  assert.equal(peer(['public-key', '--sk', keys.sk]).pk, keys.pk, 'C++ X25519 public key of an ehbp private key');
  await ehbpClientToCppServer({ keys, request: BIG_REQUEST, reply: SMALL_REPLY });
});

test('ehbp client <-> C++ server: tampering is refused on both sides', async () => {
  const keys = peer(['keygen']);
  const run = await ehbpClientToCppServer({ keys, request: SMALL_REQUEST, reply: BIG_REPLY });
  // A flipped request byte: the C++ server refuses it.
  const tampered = run.body.slice();
  tampered[4 + 5] ^= 1;
  const err = peer(['server', '--sk', keys.sk, '--enc', run.enc, '--body', tmpFile('tampered.body', tampered),
    '--plaintext-out', tmpFile('x'), '--reply', tmpFile('r', SMALL_REPLY), '--reply-out', tmpFile('y')],
  { expectFailure: true });
  assert.match(err, /DataLoss: EHBP request frame 0 at byte 0: failed to authenticate/, err);
  // A flipped reply byte in the second frame, or another nonce: ehbp refuses it.
  const badReply = run.replyBody.slice();
  badReply[4 + CHUNK + 16 + 4 + 3] ^= 0x80;
  await assert.rejects(
    readAll(await run.identity.decryptResponseWithContext(
      new Response(badReply, { headers: { 'Ehbp-Response-Nonce': run.nonce } }), run.context)),
    (e) => e.name === 'DecryptionError' && /chunk 1/.test(e.message));
  const otherNonce = (run.nonce[0] === '0' ? '1' : '0') + run.nonce.slice(1);
  await assert.rejects(
    readAll(await run.identity.decryptResponseWithContext(
      new Response(run.replyBody, { headers: { 'Ehbp-Response-Nonce': otherNonce } }), run.context)),
    (e) => e.name === 'DecryptionError');
});

// 2. JS client sending a multi-frame request (hpke/panva, framing from SPEC
// §4.3 including an empty frame) -> C++ server; reply decrypted with ehbp's
// deriveResponseKeys/decryptChunk from the same panva sender context.
test('hpke (panva) multi-frame request with an empty frame -> C++ server -> ehbp reply decryption', async () => {
  const keys = peer(['keygen']);
  const suite = panvaSuite();
  const { encapsulatedSecret, ctx } = await suite.SetupSender(await suite.DeserializePublicKey(unhex(keys.pk)),
    { info: te.encode(ehbp.HPKE_REQUEST_INFO) });
  const parts = [];
  for (let off = 0; off < BIG_REQUEST.length; off += 50000) {
    parts.push(frame(await ctx.Seal(BIG_REQUEST.subarray(off, off + 50000))));
    if (off === 0) parts.push(new Uint8Array(4));  // LEN = 0: skipped, sequence number unchanged
  }
  const plaintextOut = tmpFile('request.plain');
  const replyOut = tmpFile('reply.body');
  const out = peer(['server', '--sk', keys.sk, '--enc', hex(encapsulatedSecret), '--body', tmpFile('request.body', concat(parts)),
    '--plaintext-out', plaintextOut, '--reply', tmpFile('reply.plain', BIG_REPLY), '--reply-out', replyOut]);
  sameBytes(fs.readFileSync(plaintextOut), BIG_REQUEST, 'multi-frame request decrypted by C++');
  const secret = await ctx.Export(te.encode(ehbp.EXPORT_LABEL), ehbp.EXPORT_LENGTH);
  const km = await ehbp.deriveResponseKeys(secret, encapsulatedSecret, unhex(out.response_nonce));
  const frames = parseFrames(new Uint8Array(fs.readFileSync(replyOut)));
  const plain = [];
  for (let i = 0; i < frames.length; ++i) plain.push(await ehbp.decryptChunk(km, i, frames[i]));
  sameBytes(concat(plain), BIG_REPLY, 'reply decrypted with ehbp.decryptChunk');
});

// 3. C++ client -> JS server (hpke/panva recipient, SPEC §4.3 framing) -> JS
// reply (ehbp.deriveResponseKeys + ehbp.encryptChunk) -> C++ client.
async function cppClientToJsServer({ request, reply, chunkSize, replyChunk }) {
  const suite = panvaSuite();
  const pair = await suite.GenerateKeyPair(true);
  const pk = hex(await suite.SerializePublicKey(pair.publicKey));
  const bodyOut = tmpFile('request.body');
  const replyBody = tmpFile('reply.body');
  const replyPlainOut = tmpFile('reply.plain');
  const child = spawn(PEER, ['client', '--pk', pk, '--request', tmpFile('request.plain', request), '--body-out', bodyOut,
    '--reply-body', replyBody, '--reply-plaintext-out', replyPlainOut,
    ...(chunkSize ? ['--chunk-size', String(chunkSize)] : [])], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '', stderr = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((resolve, reject) => { child.on('error', reject); child.on('close', resolve); });
  const firstLine = await new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      stdout += d;
      const nl = stdout.indexOf('\n');
      if (nl >= 0) resolve(stdout.slice(0, nl));
    });
    child.on('close', (code) => reject(new Error(`peer client exited ${code} early: ${stderr.trim()}`)));
  });
  try {
    const { enc } = JSON.parse(firstLine);
    assert.match(enc, LOWER_HEX_64, 'Ehbp-Encapsulated-Key from C++');
    const frames = parseFrames(new Uint8Array(fs.readFileSync(bodyOut)));
    if (request.length === 0) {
      // ehbp.h: an empty request is one frame sealing "" (the SPEC would send no body).
      assert.deepEqual(frames.map((f) => f.length), [16], 'frames of an empty C++ request');
    } else {
      expectOurFrameLayout(frames, request.length, chunkSize ?? CHUNK);
    }
    const ctx = await suite.SetupRecipient(pair, unhex(enc), { info: te.encode(ehbp.HPKE_REQUEST_INFO) });
    const plain = [];
    for (const f of frames) plain.push(await ctx.Open(f));
    sameBytes(concat(plain), request, 'request decrypted by hpke (panva)');

    const nonce = new Uint8Array(randomBytes(ehbp.RESPONSE_NONCE_LENGTH));
    const secret = await ctx.Export(te.encode(ehbp.EXPORT_LABEL), ehbp.EXPORT_LENGTH);
    const km = await ehbp.deriveResponseKeys(secret, unhex(enc), nonce);
    const out = [new Uint8Array(4)];  // an empty frame first: the C++ client must skip it
    for (let off = 0, seq = 0; off < reply.length; off += replyChunk, ++seq) {
      out.push(frame(await ehbp.encryptChunk(km, seq, reply.subarray(off, off + replyChunk))));
    }
    fs.writeFileSync(replyBody, concat(out));
    child.stdin.end(`${hex(nonce)}\n`);
    const code = await exited;
    assert.equal(code, 0, `peer client exited ${code}: ${stderr.trim()}`);
    sameBytes(fs.readFileSync(replyPlainOut), reply, 'reply decrypted by C++');
  } finally {
    if (child.exitCode === null) child.kill();
  }
}

test('C++ client -> JS server (hpke + ehbp response keys): small request, 128 KiB reply in 16 KiB frames', async () => {
  await cppClientToJsServer({ request: SMALL_REQUEST, reply: BIG_REPLY, replyChunk: 16384 });
});

test('C++ client -> JS server: 192 KiB request in 4 C++ frames, small reply', async () => {
  await cppClientToJsServer({ request: BIG_REQUEST, reply: SMALL_REPLY, replyChunk: 16384 });
});

test('C++ client -> JS server: 1000-byte C++ frames, 777-byte JS frames', async () => {
  await cppClientToJsServer({ request: BIG_REQUEST.subarray(0, 20001), reply: BIG_REPLY.subarray(0, 9999), chunkSize: 1000, replyChunk: 777 });
});

test('C++ client -> JS server: empty request (one frame sealing ""), empty reply (no frame)', async () => {
  await cppClientToJsServer({ request: new Uint8Array(0), reply: new Uint8Array(0), replyChunk: 16384 });
});

// 4. Our frozen vector (tests/common/ehbp_test.cc, EhbpVectorTest.FixedKeysOwnVector)
// recomputed by the JS libraries alone.
test('our frozen EHBP vector (ehbp_test.cc FixedKeysOwnVector) checked by hpke (panva) + ehbp', async () => {
  const suite = panvaSuite();
  const skR = await suite.DeserializePrivateKey(unhex('11'.repeat(32)), false);
  const enc = unhex('0faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f20');
  const requestBody = unhex('00000021f7fca5192a73cc47e88af32677c58607bcf435966366673f057456a56eb8517611');
  const ctx = await suite.SetupRecipient(skR, enc, { info: te.encode(ehbp.HPKE_REQUEST_INFO) });
  const [ct] = parseFrames(requestBody);
  assert.equal(new TextDecoder().decode(await ctx.Open(ct)), 'ppml ehbp request');
  const secret = await ctx.Export(te.encode(ehbp.EXPORT_LABEL), ehbp.EXPORT_LENGTH);
  const km = await ehbp.deriveResponseKeys(secret, enc, unhex('33'.repeat(32)));
  const replyBody = frame(await ehbp.encryptChunk(km, 0, te.encode('ppml ehbp reply')));
  assert.equal(hex(replyBody), '0000001fd425ceb3f4fc1d9d1b4c9401d8226968b7312d602fd88292777206087b5c42');
});

// 5. Raw HPKE (RFC 9180 base mode, several messages on one context, AAD,
// Export) both ways, with two JS implementations and both AEADs.
const RAW_INFO = te.encode('ppml interop info');
const RAW_AAD = te.encode('ppml interop aad');
const RAW_EXPORT_CONTEXT = te.encode('ppml interop export');
const RAW_MESSAGES = [te.encode('first message'), new Uint8Array(0), new Uint8Array(randomBytes(40000))];

const implementations = [
  {
    name: 'hpke (panva)',
    aeads: { 1: noble.AEAD_AES_128_GCM, 2: noble.AEAD_AES_256_GCM },
    async seal(aead, pk, messages, exportLength) {
      const suite = panvaSuite(aead);
      const { encapsulatedSecret, ctx } = await suite.SetupSender(await suite.DeserializePublicKey(pk), { info: RAW_INFO });
      const cts = [];
      for (const m of messages) cts.push(await ctx.Seal(m, RAW_AAD));
      return { enc: encapsulatedSecret, cts, exported: await ctx.Export(RAW_EXPORT_CONTEXT, exportLength) };
    },
    async open(aead, sk, enc, cts, exportLength) {
      const suite = panvaSuite(aead);
      const ctx = await suite.SetupRecipient(await suite.DeserializePrivateKey(sk, false), enc, { info: RAW_INFO });
      const pts = [];
      for (const c of cts) pts.push(await ctx.Open(c, RAW_AAD));
      return { pts, exported: await ctx.Export(RAW_EXPORT_CONTEXT, exportLength) };
    },
  },
  {
    name: '@hpke/core (hpke-js)',
    aeads: { 1: () => new hpkejs.Aes128Gcm(), 2: () => new hpkejs.Aes256Gcm() },
    async seal(aead, pk, messages, exportLength) {
      const suite = hpkejsSuite(aead());
      const sender = await suite.createSenderContext({
        recipientPublicKey: await suite.kem.deserializePublicKey(pk), info: RAW_INFO,
      });
      const cts = [];
      for (const m of messages) cts.push(bytes(await sender.seal(m, RAW_AAD)));
      return { enc: bytes(sender.enc), cts, exported: bytes(await sender.export(RAW_EXPORT_CONTEXT, exportLength)) };
    },
    async open(aead, sk, enc, cts, exportLength) {
      const suite = hpkejsSuite(aead());
      const recipient = await suite.createRecipientContext({
        recipientKey: await suite.kem.deserializePrivateKey(sk), enc, info: RAW_INFO,
      });
      const pts = [];
      for (const c of cts) pts.push(bytes(await recipient.open(c, RAW_AAD)));
      return { pts, exported: bytes(await recipient.export(RAW_EXPORT_CONTEXT, exportLength)) };
    },
  },
];

for (const impl of implementations) {
  for (const aeadId of [1, 2]) {
    const aeadName = aeadId === 1 ? 'AES-128-GCM' : 'AES-256-GCM';
    test(`raw HPKE ${aeadName}: ${impl.name} seals 3 messages + Export(64) -> C++ opens`, async () => {
      const keys = peer(['keygen']);
      const s = await impl.seal(impl.aeads[aeadId], unhex(keys.pk), RAW_MESSAGES, 64);
      const out = peer(['hpke-open', '--aead', String(aeadId), '--sk', keys.sk, '--enc', hex(s.enc),
        '--info', hex(RAW_INFO), '--aad', hex(RAW_AAD), ...s.cts.flatMap((c) => ['--ct', hex(c)]),
        '--export-context', hex(RAW_EXPORT_CONTEXT), '--export-length', '64']);
      assert.equal(out.pt.length, RAW_MESSAGES.length);
      out.pt.forEach((p, i) => sameBytes(unhex(p), RAW_MESSAGES[i], `message ${i} opened by C++`));
      assert.equal(out.export, hex(s.exported), 'exported secret');
    });
    test(`raw HPKE ${aeadName}: C++ seals 3 messages + Export(64) -> ${impl.name} opens`, async () => {
      const keys = peer(['keygen']);
      const out = peer(['hpke-seal', '--aead', String(aeadId), '--pk', keys.pk, '--info', hex(RAW_INFO),
        '--aad', hex(RAW_AAD), ...RAW_MESSAGES.flatMap((m) => ['--pt', hex(m)]),
        '--export-context', hex(RAW_EXPORT_CONTEXT), '--export-length', '64']);
      const o = await impl.open(impl.aeads[aeadId], unhex(keys.sk), unhex(out.enc), out.ct.map(unhex), 64);
      o.pts.forEach((p, i) => sameBytes(p, RAW_MESSAGES[i], `message ${i} opened by ${impl.name}`));
      assert.equal(hex(o.exported), out.export, 'exported secret');
    });
  }
}

// ---- run

const versions = ['ehbp', 'hpke', '@panva/hpke-noble', '@hpke/core', '@hpke/dhkem-x25519']
  .map((p) => `${p}@${JSON.parse(fs.readFileSync(path.join(here, 'node_modules', p, 'package.json'), 'utf8')).version}`);
console.log(`ehbp_interop: node ${process.version}; ${versions.join(', ')}; peer ${PEER}`);
let failed = 0;
for (const { name, fn } of tests) {
  try {
    await fn();
    console.log(`ok      ${name}`);
  } catch (e) {
    ++failed;
    console.log(`FAILED  ${name}\n        ${String(e?.stack ?? e).split('\n').join('\n        ')}`);
  }
}
if (failed === 0) fs.rmSync(workDir, { recursive: true, force: true });
else console.log(`ehbp_interop: files kept in ${workDir}`);
console.log(`ehbp_interop: ${tests.length - failed} of ${tests.length} passed`);
process.exit(failed === 0 ? 0 : 1);
