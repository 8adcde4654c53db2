import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WeightsError } from "../src/errors.ts";
import {
  CHECKPOINT_FILENAMES,
  ShardedCheckpoint,
  checkKeys,
  decodeBF16,
  decodeF16,
  encodeBF16,
  encodeF16,
  openCheckpoint,
  openSafetensors,
  validateKeys,
  writeSafetensors,
} from "../src/weights/safetensors.ts";

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), "safetensors-test-"));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

let counter = 0;
const tmp = (name: string): string => join(dir, `${counter++}-${name}`);

/** Build a safetensors file by hand: u64 LE header length, header bytes, data bytes. */
function handBuilt(
  name: string,
  header: string | object,
  data: Uint8Array = new Uint8Array(0),
  headerLen?: bigint,
): string {
  const hb = Buffer.from(typeof header === "string" ? header : JSON.stringify(header), "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(headerLen ?? BigInt(hb.length));
  const p = tmp(name);
  writeFileSync(p, Buffer.concat([len, hb, data]));
  return p;
}

/** Assert fn throws a WeightsError whose message names the file (and the key when given). */
function throwsWeights(fn: () => unknown, file: string, key?: string, msg?: RegExp): WeightsError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof WeightsError, `expected WeightsError, got ${String(caught)}`);
  assert.equal(caught.code, "WEIGHTS");
  assert.ok(caught.message.includes(file), `message should name ${file}: ${caught.message}`);
  assert.equal(caught.file, file);
  if (key !== undefined) {
    assert.equal(caught.key, key);
    assert.ok(caught.message.includes(`[${key}]`), `message should name key ${key}: ${caught.message}`);
  }
  if (msg) assert.match(caught.message, msg);
  assert.ok(caught.fix && caught.fix.length > 0, "error should carry a fix hint");
  return caught;
}

const f32 = (...v: number[]): Float32Array => Float32Array.from(v);

describe("fp16/bf16 conversion", () => {
  test("fp16 decode matches the reference formula for all 65536 bit patterns; encode inverts it", () => {
    const all = new Uint16Array(65536);
    for (let i = 0; i < 65536; i++) all[i] = i;
    const dec = decodeF16(all);
    const enc = encodeF16(dec);
    for (let h = 0; h < 65536; h++) {
      const s = h & 0x8000 ? -1 : 1;
      const e = (h >> 10) & 0x1f;
      const m = h & 0x3ff;
      const ref = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
      if (Number.isNaN(ref)) {
        assert.ok(Number.isNaN(dec[h]), `h=${h}`);
        assert.ok(Number.isNaN(decodeF16(Uint16Array.of(enc[h]))[0]));
      } else {
        assert.ok(Object.is(dec[h], ref), `h=0x${h.toString(16)}: ${dec[h]} vs ${ref}`);
        assert.equal(enc[h], h);
      }
    }
  });

  test("fp16 encode rounds to nearest even, overflows to inf, underflows to zero", () => {
    const got = Array.from(decodeF16(encodeF16(f32(1 + 2 ** -11, 1 + 3 * 2 ** -11, 65519, 65520, 1e6, 2 ** -25, 2 ** -25 * 1.5, 1e-9, -1e-9))));
    assert.deepEqual(got.slice(0, 7), [1, 1 + 2 ** -9, 65504, Infinity, Infinity, 0, 2 ** -24]);
    assert.ok(Object.is(got[7], 0) && Object.is(got[8], -0));
  });

  test("bf16 is a 16-bit shift, encode rounds to nearest even", () => {
    assert.deepEqual(Array.from(decodeBF16(Uint16Array.of(0x3f80, 0xc060, 0x7f80, 0x0001))), [1, -3.5, Infinity, 2 ** -133]);
    const got = decodeBF16(encodeBF16(f32(1 + 2 ** -8, 1 + 3 * 2 ** -8, NaN, -Infinity, 3.4e38)));
    assert.deepEqual(Array.from(got.subarray(0, 2)), [1, 1 + 2 ** -6]);
    assert.ok(Number.isNaN(got[2]));
    assert.equal(got[3], -Infinity);
    assert.equal(got[4], Infinity); // above the halfway point past bf16 max (0x7f7f) -> rounds to inf
  });
});

describe("writer + reader round trip", () => {
  test("F32, F16, BF16 and zero-size tensors survive a round trip", () => {
    const p = tmp("rt.safetensors");
    const f16vals = f32(0.5, -2, 65504, 2 ** -24, 3 * 2 ** -24, 2 ** -14, Infinity, -Infinity, NaN, -0);
    const bf16vals = f32(1, -3.5, 2 ** 100, 0.15625, Infinity, NaN);
    const f32vals = f32(Math.PI, -1e-30, 3.4e38, Infinity, NaN, 1.5);
    writeSafetensors(
      p,
      {
        "b.half": { dtype: "F16", shape: [2, 5], data: f16vals },
        "a.single": { dtype: "F32", shape: [6], data: f32vals },
        "c.brain": { dtype: "BF16", shape: [3, 1, 2], data: bf16vals },
        "d.empty": { dtype: "F16", shape: [0, 4], data: new Float32Array(0) },
        "e.scalar": { dtype: "F32", shape: [], data: f32(7) },
      },
      { format: "pt", note: "hi" },
    );
    // header layout: padded to a multiple of 8, offsets contiguous in sorted key order
    const raw = readFileSync(p);
    const hlen = Number(raw.readBigUInt64LE(0));
    assert.equal(hlen % 8, 0);
    const hdr = JSON.parse(raw.subarray(8, 8 + hlen).toString("utf8"));
    assert.deepEqual(hdr["a.single"].data_offsets, [0, 24]);
    assert.deepEqual(hdr["b.half"].data_offsets, [24, 44]);
    assert.deepEqual(hdr["c.brain"].data_offsets, [44, 56]);
    assert.deepEqual(hdr["d.empty"].data_offsets, [56, 56]);

    const f = openSafetensors(p);
    try {
      assert.deepEqual(f.keys(), ["a.single", "b.half", "c.brain", "d.empty", "e.scalar"]);
      assert.deepEqual(f.metadata, { format: "pt", note: "hi" });
      assert.deepEqual(f.info("b.half"), { dtype: "F16", shape: [2, 5], file: p });
      const check = (got: Float32Array, want: Float32Array): void => {
        assert.equal(got.length, want.length);
        for (let i = 0; i < want.length; i++) assert.ok(Object.is(got[i], want[i]), `${i}: ${got[i]} vs ${want[i]}`);
      };
      check(f.readF32("a.single"), f32vals);
      check(f.readF32("b.half"), f16vals);
      check(f.readF32("c.brain"), bf16vals);
      assert.equal(f.readF32("d.empty").length, 0);
      assert.deepEqual(f.info("d.empty").shape, [0, 4]);
      check(f.readF32("e.scalar"), f32(7));
      throwsWeights(() => f.readF32("a.singel"), p, "a.singel", /did you mean a\.single/);
    } finally {
      f.close();
    }
    throwsWeights(() => f.readF32("a.single"), p, "a.single", /closed/);
  });

  test("hand-built file: unaligned F32 after F16, F64 converted, readBytes, __metadata__ skipped", () => {
    const data = Buffer.alloc(2 + 8 + 16);
    data.writeUInt16LE(0x3c00, 0); // fp16 1.0
    data.writeFloatLE(1.25, 2);
    data.writeFloatLE(-8, 6);
    data.writeDoubleLE(0.1, 10);
    data.writeDoubleLE(-1e300, 18);
    const p = handBuilt(
      "hand.safetensors",
      {
        __metadata__: { format: "pt" },
        h: { dtype: "F16", shape: [1], data_offsets: [0, 2] },
        s: { dtype: "F32", shape: [2], data_offsets: [2, 10] },
        d: { dtype: "F64", shape: [2], data_offsets: [10, 26] },
        i: { dtype: "I32", shape: [0], data_offsets: [26, 26] },
      },
      data,
    );
    const f = openSafetensors(p);
    try {
      assert.deepEqual(f.keys(), ["d", "h", "i", "s"]);
      assert.deepEqual(f.metadata, { format: "pt" });
      assert.deepEqual(Array.from(f.readF32("h")), [1]);
      assert.deepEqual(Array.from(f.readF32("s")), [1.25, -8]);
      assert.deepEqual(Array.from(f.readF32("d")), [Math.fround(0.1), -Infinity]);
      assert.deepEqual(Array.from(f.readBytes("s")), Array.from(data.subarray(2, 10)));
    } finally {
      f.close();
    }
  });

  test("writer rejects data/shape mismatch", () => {
    const p = tmp("bad-write.safetensors");
    throwsWeights(() => writeSafetensors(p, { w: { dtype: "F32", shape: [2, 2], data: f32(1, 2, 3) } }), p, "w", /needs 4 values/);
  });
});

describe("header validation (hand-built bytes)", () => {
  const ok = { dtype: "F32", shape: [2], data_offsets: [0, 8] };
  const eight = new Uint8Array(8);

  test("file too small for the length prefix", () => {
    const p = tmp("tiny.safetensors");
    writeFileSync(p, Buffer.from([1, 2, 3]));
    throwsWeights(() => openSafetensors(p), p, undefined, /too small/);
  });

  test("header length beyond file size", () => {
    const p = handBuilt("beyond.safetensors", { w: ok }, eight, 10_000n);
    throwsWeights(() => openSafetensors(p), p, undefined, /past the end of the file/);
  });

  test("header length absurdly large", () => {
    const p = handBuilt("absurd.safetensors", { w: ok }, eight, 1n << 62n);
    throwsWeights(() => openSafetensors(p), p, undefined, /absurd/);
  });

  test("header length < 2", () => {
    const p = handBuilt("short.safetensors", "{}", eight, 1n);
    throwsWeights(() => openSafetensors(p), p, undefined, /< 2/);
  });

  test("header not valid JSON", () => {
    const p = handBuilt("badjson.safetensors", '{"w": {"dtype": "F32",', eight);
    throwsWeights(() => openSafetensors(p), p, undefined, /not valid UTF-8 JSON/);
  });

  test("header JSON not an object", () => {
    const p = handBuilt("array.safetensors", "[1, 2]", eight);
    throwsWeights(() => openSafetensors(p), p, undefined, /array, not an object/);
  });

  test("unknown dtype lists the supported ones", () => {
    const p = handBuilt("dtype.safetensors", { w: { ...ok, dtype: "F17" } }, eight);
    throwsWeights(() => openSafetensors(p), p, "w", /unknown dtype "F17".*F32.*BF16/);
  });

  test("data_offsets missing", () => {
    const p = handBuilt("nooffs.safetensors", { w: { dtype: "F32", shape: [2] } }, eight);
    throwsWeights(() => openSafetensors(p), p, "w", /data_offsets is missing/);
  });

  test("data_offsets malformed", () => {
    for (const bad of [[0], [0, 8, 16], ["0", 8], [-1, 7], [0, 8.5]]) {
      const p = handBuilt("badoffs.safetensors", { w: { dtype: "F32", shape: [2], data_offsets: bad } }, eight);
      throwsWeights(() => openSafetensors(p), p, "w", /data_offsets .* is not \[begin, end\]/);
    }
    const p = handBuilt("reversed.safetensors", { w: { dtype: "F32", shape: [0], data_offsets: [8, 0] } }, eight);
    throwsWeights(() => openSafetensors(p), p, "w", /ends before it begins/);
  });

  test("shape malformed", () => {
    const p = handBuilt("badshape.safetensors", { w: { ...ok, shape: [2, -1] } }, eight);
    throwsWeights(() => openSafetensors(p), p, "w", /shape/);
  });

  test("shape x dtype size does not match the byte range", () => {
    const p = handBuilt("size.safetensors", { w: { dtype: "F32", shape: [2, 2], data_offsets: [0, 8] } }, eight);
    throwsWeights(() => openSafetensors(p), p, "w", /needs 16 bytes but data_offsets \[0, 8\] span 8/);
  });

  test("offsets out of range of the data section", () => {
    const p = handBuilt("range.safetensors", { w: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, eight);
    throwsWeights(() => openSafetensors(p), p, "w", /past the end of the data section \(8 bytes\)/);
  });

  test("overlapping tensor byte ranges", () => {
    const p = handBuilt(
      "overlap.safetensors",
      {
        a: { dtype: "F32", shape: [4], data_offsets: [0, 16] },
        b: { dtype: "F32", shape: [4], data_offsets: [8, 24] },
      },
      new Uint8Array(24),
    );
    throwsWeights(() => openSafetensors(p), p, "b", /overlaps tensor a/);
  });

  test("zero-size tensors anywhere are fine, even inside another range", () => {
    const p = handBuilt(
      "zeros.safetensors",
      {
        a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
        z: { dtype: "BF16", shape: [3, 0], data_offsets: [4, 4] },
        y: { dtype: "F16", shape: [0], data_offsets: [8, 8] },
      },
      eight,
    );
    const f = openSafetensors(p);
    assert.equal(f.readF32("z").length, 0);
    assert.equal(f.readF32("y").length, 0);
    f.close();
  });

  test("__metadata__ must be a string map", () => {
    const p = handBuilt("meta.safetensors", { __metadata__: { n: 3 }, w: ok }, eight);
    throwsWeights(() => openSafetensors(p), p, "__metadata__", /string values/);
  });

  test("non-float dtype cannot be read as fp32", () => {
    const p = handBuilt("int.safetensors", { w: { dtype: "I32", shape: [2], data_offsets: [0, 8] } }, eight);
    const f = openSafetensors(p);
    throwsWeights(() => f.readF32("w"), p, "w", /I32 cannot be read as fp32/);
    f.close();
  });
});

describe("sharded checkpoints and directories", () => {
  function makeSharded(name: string): { root: string; index: string; s1: string; s2: string } {
    const root = join(dir, name);
    mkdirSync(root);
    const s1 = join(root, "diffusion_pytorch_model-00001-of-00002.safetensors");
    const s2 = join(root, "diffusion_pytorch_model-00002-of-00002.safetensors");
    writeSafetensors(s1, {
      "blocks.0.w": { dtype: "F32", shape: [2, 2], data: f32(1, 2, 3, 4) },
      "blocks.0.b": { dtype: "BF16", shape: [2], data: f32(0.5, -1) },
      stray: { dtype: "F32", shape: [1], data: f32(9) },
    });
    writeSafetensors(s2, { "blocks.1.w": { dtype: "F16", shape: [3], data: f32(-2, 0.25, 65504) } });
    const index = join(root, "diffusion_pytorch_model.safetensors.index.json");
    writeFileSync(
      index,
      JSON.stringify({
        metadata: { total_size: 30 },
        weight_map: {
          "blocks.0.w": "diffusion_pytorch_model-00001-of-00002.safetensors",
          "blocks.0.b": "diffusion_pytorch_model-00001-of-00002.safetensors",
          "blocks.1.w": "diffusion_pytorch_model-00002-of-00002.safetensors",
        },
      }),
    );
    return { root, index, s1, s2 };
  }

  test("two shards via index.json, opened from the directory", () => {
    const { root, s1, s2 } = makeSharded("sharded-ok");
    const c = openCheckpoint(root);
    try {
      assert.ok(c instanceof ShardedCheckpoint);
      assert.deepEqual(c.keys(), ["blocks.0.b", "blocks.0.w", "blocks.1.w"]);
      assert.deepEqual([...c.files].sort(), [s1, s2].sort());
      assert.deepEqual(c.metadata, { total_size: "30" });
      assert.deepEqual(c.unindexedKeys, ["stray"]); // in a shard but not in the index: ignored
      assert.equal(c.has("stray"), false);
      assert.deepEqual(c.info("blocks.1.w"), { dtype: "F16", shape: [3], file: s2 });
      assert.deepEqual(Array.from(c.readF32("blocks.0.w")), [1, 2, 3, 4]);
      assert.deepEqual(Array.from(c.readF32("blocks.0.b")), [0.5, -1]);
      assert.deepEqual(Array.from(c.readF32("blocks.1.w")), [-2, 0.25, 65504]);
    } finally {
      c.close();
    }
  });

  test("missing shard names the index and the key", () => {
    const { index, s2 } = makeSharded("sharded-missing-shard");
    rmSync(s2);
    throwsWeights(() => openCheckpoint(index), index, "blocks.1.w", /shard file .*00002-of-00002\.safetensors is missing/);
  });

  test("key in index but not in its shard names the shard and the key", () => {
    const { index, s1 } = makeSharded("sharded-missing-key");
    const idx = JSON.parse(readFileSync(index, "utf8"));
    idx.weight_map["blocks.0.gone"] = "diffusion_pytorch_model-00001-of-00002.safetensors";
    writeFileSync(index, JSON.stringify(idx));
    throwsWeights(() => openCheckpoint(index), s1, "blocks.0.gone", /does not contain it/);
  });

  test("broken index", () => {
    const root = join(dir, "bad-index");
    mkdirSync(root);
    const index = join(root, "model.safetensors.index.json");
    writeFileSync(index, JSON.stringify({ metadata: {} }));
    throwsWeights(() => openCheckpoint(root), index, undefined, /weight_map/);
  });

  test("directory lookup: single file preferred, clear error when nothing is there", () => {
    const root = join(dir, "single-dir");
    mkdirSync(root);
    throwsWeights(() => openCheckpoint(root), root, undefined, new RegExp(CHECKPOINT_FILENAMES.map((n) => n.replace(/\./g, "\\.")).join(", ")));
    const p = join(root, "model.safetensors");
    writeSafetensors(p, { x: { dtype: "F32", shape: [1], data: f32(3) } });
    const c = openCheckpoint(root);
    assert.equal(c.path, p);
    assert.deepEqual(Array.from(c.readF32("x")), [3]);
    c.close();
    throwsWeights(() => openCheckpoint(join(root, "nope.safetensors")), join(root, "nope.safetensors"), undefined, /no such file/);
  });
});

describe("validateKeys", () => {
  function ckptFile(): string {
    const p = tmp("vk.safetensors");
    writeSafetensors(p, {
      "a.weight": { dtype: "F32", shape: [2, 3], data: new Float32Array(6) },
      "b.weight": { dtype: "F16", shape: [4], data: new Float32Array(4) },
      extra1: { dtype: "F32", shape: [1], data: new Float32Array(1) },
      extra2: { dtype: "F32", shape: [1], data: new Float32Array(1) },
      extra3: { dtype: "F32", shape: [1], data: new Float32Array(1) },
    });
    return p;
  }

  test("matching keys pass", () => {
    const p = ckptFile();
    const c = openCheckpoint(p);
    const exp = new Map<string, number[]>(c.keys().map((k) => [k, c.info(k).shape]));
    validateKeys(c, exp);
    c.close();
  });

  test("missing key names the checkpoint, key and expected shape", () => {
    const p = ckptFile();
    const c = openCheckpoint(p);
    const exp = new Map<string, number[]>(c.keys().map((k) => [k, c.info(k).shape]));
    exp.set("c.weight", [5, 5]);
    throwsWeights(() => validateKeys(c, exp), p, "c.weight", /1 missing:\n  c\.weight \(expected shape \[5, 5\]\)/);
    c.close();
  });

  test("unexpected keys are listed, capped", () => {
    const p = ckptFile();
    const c = openCheckpoint(p);
    const exp = new Map<string, number[]>([
      ["a.weight", [2, 3]],
      ["b.weight", [4]],
    ]);
    const e = throwsWeights(() => validateKeys(c, exp, { cap: 2 }), p, "extra1", /3 unexpected:\n  extra1 \[1\].*\n  extra2 \[1\].*\n  \.\.\. and 1 more/);
    assert.ok(!e.message.includes("extra3"));
    validateKeys(c, exp, { allowUnexpected: true });
    c.close();
  });

  test("wrong shape names file, key, expected and actual", () => {
    const p = ckptFile();
    const c = openCheckpoint(p);
    const exp = new Map<string, number[]>(c.keys().map((k) => [k, c.info(k).shape]));
    exp.set("a.weight", [3, 2]);
    exp.set("b.weight", [4, 1]);
    throwsWeights(() => validateKeys(c, exp), p, "a.weight", /a\.weight in .*: expected \[3, 2\], got \[2, 3\]/);
    const probs = checkKeys(c, exp);
    assert.deepEqual(
      probs.wrongShape.map((w) => [w.key, w.expected, w.actual]),
      [
        ["a.weight", [3, 2], [2, 3]],
        ["b.weight", [4, 1], [4]],
      ],
    );
    assert.equal(probs.missing.length + probs.unexpected.length, 0);
    c.close();
  });
});
