// Offline proof checking for Grace ledger bundles, in the browser, with WebCrypto.
//
// The console must not take the server's word that an entry is in the log: it checks
// the entry's canonical bytes against a checkpoint signed by the log's Ed25519 key,
// fetched once at sign-in (and optionally pinned by the user). This module mirrors
// grace.ledger.merkle, grace.ledger.checkpoint and grace.ledger.bundle.verify_bundle
// step for step; the browser tests compare its verdicts with the Python ones.
//
// No DOM code here: every function takes and returns plain values. Verifiers never throw
// on a wrong proof; they return false or {valid: false, reason}.

export const BUNDLE_FORMAT = "grace-ledger-proof/v1";
export const HASH_SIZE = 32;

const SIG_PREFIX = "\u2014 "; // em dash and a space (c2sp.org/signed-note)
const ALG_ED25519 = 0x01;
const B64_STRICT = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const HEX = /^(?:[0-9a-fA-F]{2})*$/;
const DECIMAL = /^(?:0|[1-9][0-9]*)$/;

/** A malformed input (bundle field, checkpoint, key), with a message naming it. */
export class ProofError extends Error {
  constructor(message) {
    super(message);
    this.name = "ProofError";
  }
}

// --- encodings -------------------------------------------------------------------------

/** Hex text to bytes; null when it is not an even run of hex digits. */
export function hexToBytes(text) {
  if (typeof text !== "string" || !HEX.test(text)) return null;
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Bytes to lowercase hex. */
export function bytesToHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Standard, padded base64 to bytes; null unless the text is strictly that (like
 * Python's ``base64.b64decode(..., validate=True)``). */
export function base64ToBytes(text) {
  if (typeof text !== "string" || !B64_STRICT.test(text)) return null;
  const raw = atob(text);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

/** Bytes to standard, padded base64. */
export function bytesToBase64(bytes) {
  let raw = "";
  for (const b of bytes) raw += String.fromCharCode(b);
  return btoa(raw);
}

/** Python's ``repr`` of a JSON value, so that reasons read exactly like the Python
 * verifier's (``'text'`` for strings, ``None`` for null). */
export function pyRepr(value) {
  if (value === undefined || value === null) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value !== "string") return JSON.stringify(value);
  const quote = value.includes("'") && !value.includes('"') ? '"' : "'";
  let out = "";
  for (const ch of value) {
    const code = ch.codePointAt(0);
    if (ch === "\\" || ch === quote) out += `\\${ch}`;
    else if (ch === "\t") out += "\\t";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch !== " " && /[\p{C}\p{Z}]/u.test(ch)) {
      const hex = code.toString(16);
      if (code < 0x100) out += `\\x${hex.padStart(2, "0")}`;
      else if (code < 0x10000) out += `\\u${hex.padStart(4, "0")}`;
      else out += `\\U${hex.padStart(8, "0")}`;
    } else out += ch;
  }
  return quote + out + quote;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

// --- Merkle tree (RFC 6962 §2.1, verifiers of RFC 9162 §2.1.3.2 and §2.1.4.2) -----------

/** ``SHA-256(0x00 || data)``: the hash of a leaf (RFC 6962 §2.1). */
export async function leafHash(data) {
  return sha256(concat(Uint8Array.of(0x00), data));
}

/** ``SHA-256(0x01 || left || right)``: the hash of an interior node (RFC 6962 §2.1). */
export async function nodeHash(left, right) {
  return sha256(concat(Uint8Array.of(0x01), left, right));
}

function isIndex(n) {
  return Number.isSafeInteger(n) && n >= 0;
}

/** The root implied by an inclusion proof (RFC 9162 §2.1.3.2), or null if the proof is
 * malformed for the position. ``index`` is 0-based. BigInt, since JS bit operators
 * work on 32 bits and a log may grow past that. */
export async function rootFromInclusionProof(leaf, index, size, proof) {
  if (!isIndex(index) || !isIndex(size) || !(index < size) || leaf.length !== HASH_SIZE) {
    return null;
  }
  let fn = BigInt(index);
  let sn = BigInt(size - 1);
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n || p.length !== HASH_SIZE) return null;
    if (fn & 1n || fn === sn) {
      r = await nodeHash(p, r);
      if (!(fn & 1n)) {
        while (fn && !(fn & 1n)) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n ? r : null;
}

/** True iff ``proof`` shows leaf ``index`` with hash ``leaf`` is in the tree with ``root``. */
export async function verifyInclusion(leaf, index, size, proof, root) {
  const computed = await rootFromInclusionProof(leaf, index, size, proof);
  return computed !== null && equalBytes(computed, root);
}

/** True iff ``proof`` shows the tree (size1, root1) is a prefix of (size2, root2):
 * RFC 9162 §2.1.4.2, with the usual trivial cases (equal sizes need an empty proof and
 * equal roots; an empty first tree needs an empty proof). */
export async function verifyConsistency(size1, size2, root1, root2, proof) {
  if (!isIndex(size1) || !isIndex(size2) || size1 > size2) return false;
  let path = Array.from(proof);
  if (size1 === size2) return path.length === 0 && equalBytes(root1, root2);
  if (size1 === 0) return path.length === 0;
  if (path.length === 0 || path.some((p) => p.length !== HASH_SIZE)) return false;
  let fn = BigInt(size1 - 1);
  let sn = BigInt(size2 - 1);
  if ((BigInt(size1) & (BigInt(size1) - 1n)) === 0n) path = [root1, ...path]; // step 2
  while (fn & 1n) {
    // step 4
    fn >>= 1n;
    sn >>= 1n;
  }
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0n) return false;
    if (fn & 1n || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      if (!(fn & 1n)) {
        while (fn && !(fn & 1n)) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n && equalBytes(fr, root1) && equalBytes(sr, root2);
}

// --- signed notes and checkpoints (c2sp.org/signed-note, c2sp.org/tlog-checkpoint) -------

async function keyId(name, publicRaw) {
  const digest = await sha256(
    concat(new TextEncoder().encode(name + "\n"), Uint8Array.of(ALG_ED25519), publicRaw),
  );
  return digest.slice(0, 4);
}

function checkName(name) {
  if (!name || /[\s+]/u.test(name)) {
    throw new ProofError(`key name ${pyRepr(name)} must be non-empty, without spaces or '+'`);
  }
  return name;
}

/** Parse a verifier key ``name+keyid+base64(0x01 || key)`` and check its key id.
 * Returns {name, keyId, publicKey} (bytes); throws ProofError when malformed. */
export async function parseVkey(vkey) {
  if (typeof vkey !== "string") throw new ProofError("verifier key must be text");
  const text = vkey.trim();
  const first = text.indexOf("+");
  const second = first < 0 ? -1 : text.indexOf("+", first + 1);
  if (first < 0 || second < 0) {
    throw new ProofError("verifier key must look like name+keyid+base64key");
  }
  const name = checkName(text.slice(0, first));
  const id = hexToBytes(text.slice(first + 1, second));
  const raw = base64ToBytes(text.slice(second + 1));
  if (id === null || raw === null) throw new ProofError("verifier key is malformed");
  if (raw.length !== 33 || raw[0] !== ALG_ED25519) {
    throw new ProofError("verifier key is not an Ed25519 key (algorithm byte 0x01, 32 bytes)");
  }
  const publicKey = raw.slice(1);
  const expected = await keyId(name, publicKey);
  if (!equalBytes(id, expected)) {
    throw new ProofError("verifier key id does not match its name and key");
  }
  return { name, keyId: expected, publicKey };
}

/** A verifier for one log, from the server's ``/v1/audit/public-key`` answer (or just a
 * vkey string). The vkey is authoritative; the other fields must agree with it.
 * Returns {name, vkey, keyId, publicKey, fingerprint, cryptoKey}. */
export async function loadVerifier(keyInfo) {
  const info = typeof keyInfo === "string" ? { vkey: keyInfo } : keyInfo;
  if (info === null || typeof info !== "object") {
    throw new ProofError("public key answer must be a JSON object");
  }
  const parsed = await parseVkey(info.vkey);
  if (info.origin !== undefined && info.origin !== parsed.name) {
    throw new ProofError(`key origin ${pyRepr(info.origin)} differs from its vkey name`);
  }
  if (info.ed25519_public_key !== undefined) {
    const raw = hexToBytes(info.ed25519_public_key);
    if (raw === null || !equalBytes(raw, parsed.publicKey)) {
      throw new ProofError("the raw Ed25519 key differs from the key in the vkey");
    }
  }
  let cryptoKey;
  try {
    cryptoKey = await crypto.subtle.importKey("raw", parsed.publicKey, { name: "Ed25519" }, false, [
      "verify",
    ]);
  } catch (e) {
    throw new ProofError(`this browser cannot use Ed25519 keys (WebCrypto): ${e.message || e}`);
  }
  const digest = bytesToHex(await sha256(parsed.publicKey));
  return {
    name: parsed.name,
    vkey: info.vkey.trim(),
    keyId: parsed.keyId,
    publicKey: parsed.publicKey,
    fingerprint: `SHA256:${digest.slice(0, 32).match(/.{4}/g).join(":")}`,
    cryptoKey,
  };
}

/** True iff ``note`` carries a valid signature by the verifier's key under its name
 * (mirrors NoteVerifier.verify: the first line naming the key decides). */
export async function verifyNote(note, verifier) {
  if (typeof note !== "string") return false;
  const cut = note.indexOf("\n\n");
  if (cut < 0) return false;
  const body = note.slice(0, cut);
  const sigs = note.slice(cut + 2);
  if (!body.isWellFormed()) return false; // lone surrogates: not encodable as UTF-8
  const message = new TextEncoder().encode(body + "\n");
  for (const line of sigs.split("\n")) {
    if (!line.startsWith(SIG_PREFIX)) continue;
    const rest = line.slice(SIG_PREFIX.length);
    const space = rest.indexOf(" ");
    const name = space < 0 ? rest : rest.slice(0, space);
    const sigB64 = space < 0 ? "" : rest.slice(space + 1);
    if (name !== verifier.name) continue;
    const blob = base64ToBytes(sigB64);
    if (blob === null) return false;
    if (bytesToBase64(blob) !== sigB64) return false; // non-canonical base64: not our note
    if (blob.length !== 68 || !equalBytes(blob.slice(0, 4), verifier.keyId)) continue;
    try {
      return await crypto.subtle.verify(
        { name: "Ed25519" },
        verifier.cryptoKey,
        blob.slice(4),
        message,
      );
    } catch {
      return false;
    }
  }
  return false;
}

/** Parse a checkpoint note's body: {origin, treeSize, rootHash, note}; ProofError names
 * what is malformed. Signatures are checked separately (verifyNote). */
export function parseCheckpoint(note) {
  if (typeof note !== "string") {
    throw new ProofError("proof bundle field 'checkpoint' must be the signed note text");
  }
  const cut = note.indexOf("\n\n");
  if (cut < 0) throw new ProofError("checkpoint note has no blank line before its signatures");
  const lines = note.slice(0, cut).split("\n");
  if (lines.length < 3) {
    throw new ProofError("checkpoint body needs origin, tree size and root hash lines");
  }
  const [origin, sizeText, rootText] = lines;
  if (!origin) throw new ProofError("checkpoint origin line is empty");
  if (!DECIMAL.test(sizeText) || !Number.isSafeInteger(Number(sizeText))) {
    throw new ProofError(`checkpoint tree size ${pyRepr(sizeText)} is not a decimal number`);
  }
  const rootHash = base64ToBytes(rootText);
  if (rootHash === null) {
    throw new ProofError(`checkpoint root hash ${pyRepr(rootText)} is not base64`);
  }
  if (rootHash.length !== HASH_SIZE) {
    throw new ProofError(`checkpoint root hash is ${rootHash.length} bytes, expected 32`);
  }
  return { origin, treeSize: Number(sizeText), rootHash, note };
}

// --- bundles ---------------------------------------------------------------------------

/** Parse a bundle as the API returns it (mirrors ProofBundle.from_json); ProofError names
 * the field that is wrong. The server's decoded ``entry`` and ``leaf_hash`` are ignored:
 * only the canonical bytes count. */
export function parseBundle(data) {
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    throw new ProofError("proof bundle must be a JSON object");
  }
  if (data.format !== BUNDLE_FORMAT) {
    throw new ProofError(
      `proof bundle format must be '${BUNDLE_FORMAT}', got ${pyRepr(data.format)}`,
    );
  }
  const integer = (name) => {
    const value = data[name];
    if (!isIndex(value)) {
      throw new ProofError(`proof bundle field '${name}' must be a non-negative integer`);
    }
    return value;
  };
  const hashes = (name) => {
    const value = data[name] === undefined ? [] : data[name];
    if (!Array.isArray(value)) {
      throw new ProofError(`proof bundle field '${name}' must be a list of hex hashes`);
    }
    return value.map((h) => {
      const bytes = hexToBytes(h);
      if (bytes === null) throw new ProofError(`proof bundle field '${name}' holds a non-hex hash`);
      return bytes;
    });
  };
  const entry = base64ToBytes(data.entry_canonical === undefined ? "" : data.entry_canonical);
  if (entry === null) throw new ProofError("proof bundle field 'entry_canonical' is not base64");
  return {
    seq: integer("seq"),
    treeSize: integer("tree_size"),
    entry,
    inclusionProof: hashes("inclusion_proof"),
    checkpoint: parseCheckpoint(data.checkpoint),
    consistencyProof: hashes("consistency_proof"),
  };
}

function decodeEntry(bytes) {
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    return undefined;
  }
}

/** Check a bundle (the API's JSON) against the log's verifier, with no access to the log.
 * Resolves to {valid, reason, entry, leafHash}: ``entry`` is the object decoded from the
 * verified canonical bytes, ``leafHash`` its hex leaf hash (both only when valid). */
export async function verifyBundle(data, verifier) {
  let bundle;
  try {
    bundle = parseBundle(data);
  } catch (e) {
    if (e instanceof ProofError) return { valid: false, reason: e.message };
    throw e;
  }
  const cp = bundle.checkpoint;
  const fail = (reason) => ({ valid: false, reason });
  if (cp.origin !== verifier.name) {
    return fail(`checkpoint origin ${pyRepr(cp.origin)} is not the key's log ${pyRepr(verifier.name)}`);
  }
  if (!(await verifyNote(cp.note, verifier))) {
    return fail("checkpoint signature does not verify with the public key");
  }
  const claimed = decodeEntry(bundle.entry);
  if (claimed === undefined) return fail("entry bytes are not JSON");
  if (
    claimed === null ||
    typeof claimed !== "object" ||
    Array.isArray(claimed) ||
    claimed.seq !== bundle.seq
  ) {
    return fail(`entry bytes are not entry ${bundle.seq}`);
  }
  if (!(1 <= bundle.seq && bundle.seq <= bundle.treeSize && bundle.treeSize <= cp.treeSize)) {
    return fail(
      `positions do not fit: seq ${bundle.seq}, tree size ${bundle.treeSize}, ` +
        `checkpoint size ${cp.treeSize}`,
    );
  }
  const leaf = await leafHash(bundle.entry);
  const root = await rootFromInclusionProof(
    leaf,
    bundle.seq - 1,
    bundle.treeSize,
    bundle.inclusionProof,
  );
  if (root === null) return fail("inclusion proof has the wrong shape for its position");
  if (bundle.treeSize === cp.treeSize) {
    if (!equalBytes(root, cp.rootHash)) return fail("inclusion proof does not lead to the signed root");
  } else if (
    !(await verifyConsistency(
      bundle.treeSize,
      cp.treeSize,
      root,
      cp.rootHash,
      bundle.consistencyProof,
    ))
  ) {
    return fail(
      `consistency proof from size ${bundle.treeSize} to the signed size ` +
        `${cp.treeSize} does not verify`,
    );
  }
  return {
    valid: true,
    reason: `entry ${bundle.seq} is in the log ${pyRepr(cp.origin)} signed at size ${cp.treeSize}`,
    entry: claimed,
    leafHash: bytesToHex(leaf),
    checkpointSize: cp.treeSize,
  };
}

// --- the listed entry against the proven one -------------------------------------------

const ENTRY_FIELDS = ["seq", "subsystem", "actor", "action", "resource", "result", "prev_hash"];
const TIMESTAMP = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?(Z|[+-]\d\d:\d\d)$/;

/** A UTC timestamp in one spelling (microseconds, "Z"), or null if not UTC ISO 8601. */
export function normalizeTimestamp(text) {
  const m = typeof text === "string" ? TIMESTAMP.exec(text) : null;
  if (m === null || (m[3] !== "Z" && m[3] !== "+00:00" && m[3] !== "-00:00")) return null;
  return `${m[1]}.${(m[2] || "").padEnd(6, "0")}Z`;
}

/** JSON text with object keys sorted: equal values give equal text. */
export function stableStringify(value) {
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${stableStringify(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** Does the entry the server listed say what the proven bytes say? ``proven`` is a valid
 * verifyBundle result. Resolves to {valid, reason}. */
export function matchesListed(listed, proven) {
  const fail = (reason) => ({ valid: false, reason });
  if (listed === null || typeof listed !== "object") return fail("no listed entry to compare");
  const entry = proven.entry;
  for (const field of ENTRY_FIELDS) {
    if (listed[field] !== entry[field]) {
      return fail(`the listed ${field} differs from the signed entry's`);
    }
  }
  const listedTime = normalizeTimestamp(listed.timestamp);
  if (listedTime === null || listedTime !== normalizeTimestamp(entry.timestamp)) {
    return fail("the listed timestamp differs from the signed entry's");
  }
  if (stableStringify(listed.payload) !== stableStringify(entry.payload)) {
    return fail("the listed payload differs from the signed entry's");
  }
  if (listed.entry_hash !== proven.leafHash) {
    return fail("the listed entry hash is not the hash of the signed entry's bytes");
  }
  return { valid: true, reason: "the listed entry matches the signed entry" };
}
