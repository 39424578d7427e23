import { CheckpointError } from "../errors.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "../../tests/assert.ts";
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits, fp8Table } from "./f16.ts";
import {
  encodeSafetensors,
  openSafetensors,
  parseSafetensorsHeader,
  type TensorToWrite,
  writeSafetensors,
} from "./safetensors.ts";
import { openCheckpoint, validateSafetensors } from "./safetensors_index.ts";
import { Prng } from "./prng.ts";

const FIXTURE = new URL("../../tests/fixtures/safetensors/reference.safetensors", import.meta.url)
  .pathname;

/** A file: 8-byte length, `header` (string or object) padded with `pad` spaces, `data` bytes. */
function rawFile(header: unknown, data: number | Uint8Array, pad = 0): Uint8Array {
  const h = new TextEncoder().encode(
    (typeof header === "string" ? header : JSON.stringify(header)) + " ".repeat(pad),
  );
  const d = typeof data === "number" ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + h.length + d.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  out.set(d, 8 + h.length);
  return out;
}

function parse(bytes: Uint8Array) {
  return parseSafetensorsHeader("x.safetensors", bytes, bytes.length);
}

function bad(bytes: Uint8Array, field: string | undefined, includes: string): void {
  const e = assertThrows(() => parse(bytes), CheckpointError, includes) as CheckpointError;
  assertEquals(e.file, "x.safetensors");
  assertEquals(e.field, field);
}

/** The tensors of make_reference.py, as this writer's input. */
function referenceTensors(): Record<string, TensorToWrite> {
  const u8 = (a: number[]) => new Uint8Array(a);
  return {
    f32: { dtype: "F32", shape: [2, 3], data: new Float32Array([0, 1, -2.5, 3.25, 1e-8, -65504]) },
    f16: { dtype: "F16", shape: [5], data: new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0400, 1]) },
    bf16: { dtype: "BF16", shape: [4], data: new Uint16Array([0x3f80, 0xc040, 0x7f80, 1]) },
    f64: { dtype: "F64", shape: [2], data: new Float64Array([1.5, -1e300]) },
    i64: { dtype: "I64", shape: [3], data: new BigInt64Array([-1n, 2n ** 40n, 7n]) },
    u64: { dtype: "U64", shape: [1], data: new BigUint64Array([2n ** 33n]) },
    i32: { dtype: "I32", shape: [2], data: new Int32Array([-7, 123456]) },
    u32: { dtype: "U32", shape: [1], data: new Uint32Array([4000000000]) },
    i16: { dtype: "I16", shape: [2], data: new Int16Array([-300, 300]) },
    u16: { dtype: "U16", shape: [1], data: new Uint16Array([65535]) },
    i8: { dtype: "I8", shape: [3], data: new Int8Array([-128, 0, 127]) },
    u8: { dtype: "U8", shape: [2], data: u8([0, 255]) },
    bool: { dtype: "BOOL", shape: [3], data: u8([1, 0, 1]) },
    f8_e4m3: { dtype: "F8_E4M3", shape: [4], data: u8([0x38, 0x7e, 0x01, 0xff]) },
    f8_e5m2: { dtype: "F8_E5M2", shape: [4], data: u8([0x3c, 0x7b, 0x7c, 0x01]) },
    empty: { dtype: "F32", shape: [0, 3], data: new Float32Array(0) },
    scalar: { dtype: "F32", shape: [], data: new Float32Array([42]) },
    "a.b": { dtype: "F32", shape: [1], data: new Float32Array([-1]) },
  };
}
const REFERENCE_META = {
  format: "pt",
  "webdit.plan": '{"layers":[{"name":"blocks.0","wbits":4}]}',
};

Deno.test("reads a file written by the Python safetensors library, every dtype", async () => {
  using f = await openSafetensors(FIXTURE);
  assertEquals(f.tensors.size, 18);
  assertEquals(f.metadata, REFERENCE_META);
  assertEquals(f.tensors.get("f32")!.shape, [2, 3]);
  assertEquals(f.tensors.get("scalar")!.shape, []);
  const r = async (n: string) => Array.from(await f.readF32(n));
  assertEquals(await r("f32"), Array.from(new Float32Array([0, 1, -2.5, 3.25, 1e-8, -65504])));
  assertEquals(await r("f16"), [1, -2, 65504, 2 ** -14, 2 ** -24]);
  assertEquals(await r("bf16"), [1, -3, Infinity, 2 ** -133]);
  assertEquals(await r("f64"), [1.5, -Infinity]); // -1e300 does not fit f32
  assertEquals(await r("i64"), [-1, 2 ** 40, 7]);
  assertEquals(await r("u64"), [2 ** 33]);
  assertEquals(await r("i32"), [-7, 123456]);
  assertEquals(await r("u32"), [4000000000]);
  assertEquals(await r("i16"), [-300, 300]);
  assertEquals(await r("u16"), [65535]);
  assertEquals(await r("i8"), [-128, 0, 127]);
  assertEquals(await r("u8"), [0, 255]);
  assertEquals(await r("bool"), [1, 0, 1]);
  assertEquals(await r("f8_e4m3"), [1, 448, 2 ** -9, NaN]);
  assertEquals(await r("f8_e5m2"), [1, 57344, Infinity, 2 ** -16]);
  assertEquals(await r("empty"), []);
  assertEquals(await r("scalar"), [42]);
  assertEquals(Array.from(await f.readF16Bits("f16")), [0x3c00, 0xc000, 0x7bff, 0x0400, 1]);
  assertEquals(Array.from(await f.readF16Bits("f32")).slice(0, 4), [0, 0x3c00, 0xc100, 0x4280]);
  await assertRejects(() => f.readF16Bits("i32"), CheckpointError, "not a float dtype");
  await assertRejects(() => f.readRaw("nope"), CheckpointError, "no such tensor");
});

Deno.test("the writer reproduces the reference library's bytes exactly", async () => {
  const ref = await Deno.readFile(FIXTURE);
  const mine = encodeSafetensors(referenceTensors(), REFERENCE_META);
  assertEquals(mine.length, ref.length);
  assert(mine.every((b, i) => b === ref[i]), "bytes differ from the reference file");
  const n = Number(new DataView(mine.buffer).getBigUint64(0, true));
  assertEquals(n % 8, 0);
});

Deno.test("write → open round trip with F16/BF16 rounding and metadata; atomic rename", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/rt.safetensors`;
    const x = new Float32Array([1 / 3, -1 / 3, 65520, 1e-8, 1.00390625, 1.01171875]);
    await writeSafetensors(path, {
      "w.f16": { dtype: "F16", shape: [2, 3], data: x },
      "w.bf16": { dtype: "BF16", shape: [6], data: x },
      "w.f32": { dtype: "F32", shape: [3, 2], data: x },
    }, { note: "hi" });
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["rt.safetensors"]);
    using f = await openSafetensors(path);
    assertEquals([...f.tensors.keys()], ["w.f32", "w.bf16", "w.f16"]); // by dtype, widest first
    assertEquals(f.metadata, { note: "hi" });
    // 1/3 → 0x3555, 65520 rounds up to Inf, 1e-8 underflows to 0 (min subnormal is 6e-8).
    assertEquals(Array.from(await f.readF16Bits("w.f16")), [
      0x3555,
      0xb555,
      0x7c00,
      0,
      0x3c04,
      0x3c0c,
    ]);
    // bf16: 1.00390625 is a tie → even (1.0); 1.01171875 is a tie → even (1.015625).
    const bb = new Uint16Array((await f.readRaw("w.bf16")).buffer);
    assertEquals(Array.from(bb), [0x3eab, 0xbeab, 0x4780, 0x322c, 0x3f80, 0x3f82]);
    assertEquals(Array.from(await f.readF32("w.f32")), Array.from(x));
    const parts = await Promise.all([
      f.readRaw("w.f32"),
      f.readRaw("w.f16"),
      f.readRange("w.f32", 4, 8),
    ]);
    assertEquals(Array.from(new Float32Array(parts[2].buffer)), [x[1]]);
    assertEquals(parts[1].length, 12);
    f.close();
    await assertRejects(() => f.readRaw("w.f32"), CheckpointError, "closed");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writer rejects bad arguments", () => {
  const f = new Float32Array(4);
  assertThrows(
    () => encodeSafetensors({ a: { dtype: "F32", shape: [5], data: f } }),
    RangeError,
    "needs 20 bytes",
  );
  assertThrows(
    () => encodeSafetensors({ a: { dtype: "I32", shape: [4], data: f } }),
    TypeError,
    "does not fit",
  );
  assertThrows(
    () => encodeSafetensors({ a: { dtype: "X" as "F32", shape: [4], data: f } }),
    TypeError,
    "unknown dtype",
  );
  assertThrows(
    () => encodeSafetensors({ a: { dtype: "F32", shape: [-4], data: f } }),
    TypeError,
    "shape",
  );
  assertThrows(
    () => encodeSafetensors({ __metadata__: { dtype: "F32", shape: [4], data: f } }),
    TypeError,
    "reserved",
  );
});

Deno.test("conversions match known bit patterns", () => {
  assertEquals(
    Array.from(f32ToF16Bits([1, -2, 65504, 65519, 65520, 2 ** -24, 2 ** -25, NaN])).slice(0, 7),
    [
      0x3c00,
      0xc000,
      0x7bff,
      0x7bff,
      0x7c00,
      0x0001,
      0,
    ],
  );
  assert(Number.isNaN(f16BitsToF32(f32ToF16Bits([NaN]))[0]));
  assertEquals(Array.from(f16BitsToF32(new Uint16Array([0x7c00, 0xfc00, 0x3555]))), [
    Infinity,
    -Infinity,
    0.333251953125,
  ]);
  const bits = (u: number) => new Float32Array(new Uint32Array([u]).buffer)[0];
  assertEquals(
    Array.from(
      f32ToBf16Bits([bits(0x3f808000), bits(0x3f818000), bits(0x7f7fffff), bits(0x7f800001), -0]),
    ),
    [
      0x3f80,
      0x3f82,
      0x7f80,
      0x7fc0,
      0x8000,
    ],
  );
  assertEquals(Array.from(bf16BitsToF32(new Uint16Array([0x3f80, 0xc000, 0x0001]))), [
    1,
    -2,
    2 ** -133,
  ]);
  const e4 = fp8Table("F8_E4M3");
  assertEquals([e4[0x7e], e4[0xfe], e4[0x08], e4[0x07]], [448, -448, 2 ** -6, 7 * 2 ** -9]);
  assert(Number.isNaN(e4[0x7f]) && Number.isNaN(e4[0xff]));
  const e5 = fp8Table("F8_E5M2");
  assertEquals([e5[0x7b], e5[0x7c], e5[0xfc], e5[0x04]], [57344, Infinity, -Infinity, 2 ** -14]);
  assert(Number.isNaN(e5[0x7d]));
  const fnuz = fp8Table("F8_E4M3FNUZ");
  assertEquals([fnuz[0x7f], fnuz[0x08], fnuz[0x00]], [240, 2 ** -7, 0]);
  assert(Number.isNaN(fnuz[0x80]));
  assertEquals(fp8Table("F8_E5M2FNUZ")[0x7f], 57344);
  assertEquals([fp8Table("F8_E8M0")[127], fp8Table("F8_E8M0")[0]], [1, 2 ** -127]);
});

const T = (dtype: string, shape: number[], a: number, b: number) => ({
  dtype,
  shape,
  data_offsets: [a, b],
});

Deno.test("header validation: each defect is reported with file and field", () => {
  const ok = rawFile({ a: T("F32", [2], 0, 8), b: T("F16", [3], 8, 14) }, 14, 2);
  assertEquals([...parse(ok).tensors.keys()], ["a", "b"]);
  bad(ok.subarray(0, 5), "header length", "shorter than the 8-byte");
  bad(ok.subarray(0, ok.length - 3), "b", "truncated");
  const long = ok.slice();
  new DataView(long.buffer).setBigUint64(0, 10_000n, true);
  bad(long, "header length", "runs past the end");
  new DataView(long.buffer).setBigUint64(0, 2n ** 63n, true);
  bad(long, "header length", "exceeds the 100000000-byte cap");
  bad(rawFile({ a: T("F32", [2], 0, 8), b: T("F16", [3], 6, 12) }, 12), "b", 'overlap tensor "a"');
  bad(rawFile({ a: T("F32", [2], 0, 8), b: T("F16", [3], 10, 16) }, 16), "b", "hole of 2 bytes");
  bad(rawFile({ a: T("F32", [2], 4, 12) }, 12), "a", "hole of 4 bytes after the header");
  bad(rawFile({ a: T("F32", [2], 0, 8) }, 12), "data", "4 bytes after the last tensor");
  bad(rawFile({ a: T("F33", [2], 0, 8) }, 8), "a", 'unknown dtype "F33"');
  bad(rawFile({ a: T("F32", [3], 0, 8) }, 8), "a", "needs 12");
  bad(rawFile({ a: T("F4", [3], 0, 2) }, 2), "a", "not a whole number of bytes");
  bad(rawFile({ a: T("F32", [-2], 0, 8) }, 8), "a", "non-negative integer");
  bad(rawFile('{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}', 8), "a", "number 2.0");
  bad(rawFile({ a: T("F32", [2], 8, 0) }, 8), "a", "end before they begin");
  bad(rawFile({ a: { dtype: "F32", shape: [2] } }, 8), "a", 'missing field "data_offsets"');
  bad(rawFile({ a: { ...T("F32", [2], 0, 8), extra: 1 } }, 8), "a", 'unknown field "extra"');
  bad(rawFile({ a: [1, 2] }, 0), "a", "entry must be an object");
  bad(
    rawFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}', 8),
    "header",
    "invalid JSON",
  );
  bad(rawFile("[1, 2]", 0), "header", "must begin with");
  bad(rawFile(' {"a": 1}', 0), "header", "must begin with");
  bad(rawFile('{"a": 1}', 0), "a", "entry must be an object");
  bad(rawFile('{"a":' + "[".repeat(20) + "]".repeat(20) + "}", 0), "a", "nests deeper than 8");
  bad(rawFile('{"__metadata__":{"k":1}}', 0), "__metadata__", 'value of "k" must be a string');
  bad(rawFile('{"__metadata__":{"k":"v","k":"w"}}', 0), "__metadata__", 'key "k" appears twice');
  const dup = '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},' +
    '"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}';
  bad(rawFile(dup, 8), "a", "appears twice");
  bad(
    rawFile('{"\\u0061":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":1}', 4),
    "a",
    "appears twice",
  );
  const utf = rawFile('{"a":1}', 0);
  utf[10] = 0xff;
  bad(utf, "header", "UTF-8");
});

Deno.test("empty file with no tensors and null metadata is valid", () => {
  const h = parse(rawFile('{"__metadata__":null}', 0, 3));
  assertEquals(h.tensors.size, 0);
  assertEquals(h.metadata, {});
  assertEquals(parse(rawFile("{}", 0)).dataLength, 0);
});

Deno.test("a tensor past 2 GiB is refused by readRaw with a clear message; slices still read", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/big.safetensors`;
    const n = 3 * 2 ** 30;
    const head = rawFile({ big: T("U8", [n], 0, n) }, 0);
    await Deno.writeFile(path, head);
    await Deno.truncate(path, head.length + n); // sparse: no 3 GiB written
    using f = await openSafetensors(path);
    await assertRejects(
      () => f.readRaw("big"),
      CheckpointError,
      "read it in slices with readRange",
    );
    assertEquals(Array.from(await f.readRange("big", n - 4, n)), [0, 0, 0, 0]);
    await assertRejects(() => f.readRange("big", 0, n + 1), RangeError, "not inside");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sharded checkpoints and diffusers folders load as one logical file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeSafetensors(`${dir}/s-1.safetensors`, {
      a: { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) },
    });
    await writeSafetensors(`${dir}/s-2.safetensors`, {
      b: { dtype: "F16", shape: [1], data: new Float32Array([3]) },
    });
    const index = {
      metadata: { total_size: 10 },
      weight_map: { a: "s-1.safetensors", b: "s-2.safetensors" },
    };
    const idx = `${dir}/diffusion_pytorch_model.safetensors.index.json`;
    await Deno.writeTextFile(idx, JSON.stringify(index));
    using c = await openCheckpoint(dir);
    assertEquals([...c.tensors.keys()].sort(), ["a", "b"]);
    assertEquals(c.metadata, { total_size: "10" });
    assertEquals(Array.from(await c.readF32("b")), [3]);
    assertEquals(c.tensors.get("b")!.file, `${dir}/s-2.safetensors`);
    const rep = await validateSafetensors(idx);
    assertEquals(rep.map((r) => [r.name, r.nan, r.inf]), [["a", 0, 0], ["b", 0, 0]]);

    await Deno.writeTextFile(
      idx,
      JSON.stringify({ weight_map: { ...index.weight_map, c: "s-2.safetensors" } }),
    );
    let e = await assertRejects(
      () => openCheckpoint(idx),
      CheckpointError,
      "missing from this shard",
    ) as CheckpointError;
    assertEquals([e.file, e.field], [`${dir}/s-2.safetensors`, "c"]);
    await writeSafetensors(`${dir}/s-3.safetensors`, {
      c: { dtype: "U8", shape: [1], data: new Uint8Array(1) },
      d: { dtype: "U8", shape: [1], data: new Uint8Array(1) },
    });
    await Deno.writeTextFile(
      idx,
      JSON.stringify({ weight_map: { a: "s-1.safetensors", c: "s-3.safetensors" } }),
    );
    e = await assertRejects(
      () => openCheckpoint(idx),
      CheckpointError,
      "not in the weight_map",
    ) as CheckpointError;
    assertEquals([e.file, e.field], [`${dir}/s-3.safetensors`, "d"]);
    await Deno.writeTextFile(
      idx,
      JSON.stringify({
        weight_map: { a: "s-1.safetensors", b: "s-1.safetensors", x: "s-2.safetensors" },
      }),
    );
    e = await assertRejects(
      () => openCheckpoint(idx),
      CheckpointError,
      "puts it in s-1",
    ) as CheckpointError;
    assertEquals([e.file, e.field], [`${dir}/s-2.safetensors`, "b"]);
    await Deno.writeTextFile(idx, JSON.stringify({ weight_map: { a: "../s-1.safetensors" } }));
    await assertRejects(() => openCheckpoint(idx), CheckpointError, "inside the index's folder");
    await Deno.writeTextFile(idx, '{"weight_map":{"a":"s-1.safetensors","a":"s-2.safetensors"}}');
    await assertRejects(() => openCheckpoint(idx), CheckpointError, "appears twice");
    await Deno.writeTextFile(
      idx,
      JSON.stringify({ weight_map: { a: "s-1.safetensors", b: "s-9.safetensors" } }),
    );
    e = await assertRejects(
      () => openCheckpoint(idx),
      CheckpointError,
      "no such file",
    ) as CheckpointError;
    assertEquals(e.file, `${dir}/s-9.safetensors`);
    await Deno.remove(idx);
    await assertRejects(() => openCheckpoint(dir), CheckpointError, "is a directory without");
    await assertRejects(
      () => openCheckpoint(`${dir}/nope.safetensors`),
      CheckpointError,
      "no such file",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("validation counts NaN/Inf and can fail on them", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/nan.safetensors`;
    await writeSafetensors(path, {
      x: { dtype: "F32", shape: [4], data: new Float32Array([NaN, Infinity, 1, -Infinity]) },
      y: { dtype: "F64", shape: [1], data: new Float64Array([1e300]) },
    });
    const rep = await validateSafetensors(path);
    assertEquals(rep.map((r) => [r.name, r.nan, r.inf]), [["y", 0, 0], ["x", 1, 2]]);
    await assertRejects(
      () => validateSafetensors(path, { failOnNonFinite: true }),
      CheckpointError,
      "1 NaN and 2 Inf",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fuzz: random corruptions of a valid file only ever raise CheckpointError", () => {
  const good = encodeSafetensors(referenceTensors(), REFERENCE_META);
  const rng = new Prng(3);
  let rejected = 0;
  for (let trial = 0; trial < 3000; trial++) {
    const b = good.slice(
      0,
      trial % 10 === 0 ? Math.floor(rng.uniform() * good.length) : good.length,
    );
    const flips = 1 + Math.floor(rng.uniform() * 4);
    for (let k = 0; k < flips && b.length; k++) {
      // Mostly the header, where the structure lives; sometimes the length field.
      const at = k === 0 && trial % 7 === 0
        ? Math.floor(rng.uniform() * 8)
        : 8 + Math.floor(rng.uniform() * 1160);
      if (at < b.length) b[at] = rng.nextU32() & 255;
    }
    try {
      parseSafetensorsHeader("f", b, b.length);
    } catch (e) {
      if (!(e instanceof CheckpointError)) throw new Error(`trial ${trial}: ${(e as Error).stack}`);
      rejected++;
    }
  }
  assert(rejected > 2000, `only ${rejected} of 3000 corruptions were rejected`);
});
