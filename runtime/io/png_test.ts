import { encode } from "fast-png";
import { CheckpointError } from "../errors.ts";
import { assertEquals, assertThrows } from "../../tests/assert.ts";
import { decodePng, encodePng, makeGrid, readPng, tensorToImage, writePng } from "./png.ts";

Deno.test("PNG round trip, RGB and RGBA, odd sizes", () => {
  for (const [w, h, c] of [[1, 1, 3], [7, 5, 3], [3, 9, 4], [2, 2, 1]]) {
    const data = new Uint8Array(w * h * c).map((_, i) => (i * 37 + 11) & 255);
    const img = decodePng(encodePng(data, w, h, c));
    assertEquals([img.width, img.height, img.channels], [w, h, c]);
    assertEquals(Array.from(img.data), Array.from(data));
  }
});

Deno.test("known pixel bytes: a 2×1 RGB PNG from fast-png decodes to its values", () => {
  const bytes = encodePng(new Uint8Array([255, 0, 0, 0, 128, 255]), 2, 1);
  assertEquals(Array.from(bytes.subarray(0, 8)), [137, 80, 78, 71, 13, 10, 26, 10]); // signature
  assertEquals(Array.from(bytes.subarray(12, 16)), [73, 72, 68, 82]); // "IHDR"
  const dv = new DataView(bytes.buffer, bytes.byteOffset);
  assertEquals([dv.getUint32(16), dv.getUint32(20), bytes[24], bytes[25]], [2, 1, 8, 2]); // w, h, depth, RGB
  assertEquals(Array.from(decodePng(bytes).data), [255, 0, 0, 0, 128, 255]);
});

Deno.test("decode widens 16-bit, palette and 1-bit images to 8 bits", () => {
  const d16 = encode({
    width: 2,
    height: 1,
    channels: 1,
    depth: 16,
    data: new Uint16Array([65535, 257 * 3]),
  });
  assertEquals(Array.from(decodePng(d16).data), [255, 3]);
  const pal = encode({
    width: 3,
    height: 1,
    channels: 1,
    depth: 8,
    data: new Uint8Array([0, 1, 1]),
    palette: [[10, 20, 30], [40, 50, 60]],
  });
  const p = decodePng(pal);
  assertEquals([p.channels, Array.from(p.data)], [3, [10, 20, 30, 40, 50, 60, 40, 50, 60]]);
  const bits = encode({
    width: 10,
    height: 2,
    channels: 1,
    depth: 1,
    data: new Uint8Array([0b10100000, 0b01000000, 0xff, 0xc0]),
  });
  assertEquals(Array.from(decodePng(bits).data), [
    255,
    0,
    255,
    0,
    0,
    0,
    0,
    0,
    0,
    255,
    255,
    255,
    255,
    255,
    255,
    255,
    255,
    255,
    255,
    255,
  ]);
});

Deno.test("bad input: wrong sizes throw RangeError, a broken PNG a CheckpointError", () => {
  assertThrows(() => encodePng(new Uint8Array(5), 2, 1), RangeError, "needs 6");
  assertThrows(() => encodePng(new Uint8Array(6), 0, 1), RangeError, "width");
  assertThrows(() => encodePng(new Uint8Array(6), 2, 1, 5), RangeError, "channels");
  const png = encodePng(new Uint8Array(12), 2, 2);
  assertThrows(
    () => decodePng(png.subarray(0, png.length - 20), "a.png"),
    CheckpointError,
    "a.png: not a valid PNG",
  );
  const flipped = png.slice();
  flipped[40] ^= 0xff;
  assertThrows(() => decodePng(flipped), CheckpointError, "not a valid PNG");
  assertThrows(() => decodePng(new Uint8Array([1, 2, 3])), CheckpointError, "not a valid PNG");
});

Deno.test("tensorToImage: -1..1 → bytes as diffusers (clamp, f32, round half to even), planar → interleaved", () => {
  // x = 0 → 127.5 → 128 (even); 0.25·255 = 63.75 → 64; just under 0.5 → 0.
  const xs = [-1, 0, 1, 2, NaN, -0.5, -3, 2 * (0.5 / 255) - 1];
  const chw = new Float32Array([...xs, ...xs.map(() => 1), ...xs.map(() => -1)]);
  const img = tensorToImage(chw, 3, 2, 4);
  assertEquals([img.width, img.height, img.channels], [4, 2, 3]);
  const r = Array.from({ length: 8 }, (_, i) => img.data[i * 3]);
  assertEquals(r, [0, 128, 255, 255, 0, 64, 0, 0]);
  assertEquals([img.data[1], img.data[2]], [255, 0]);
  const g = tensorToImage(new Float32Array([0, 0.5, 1, 1.5]), 1, 2, 2, "0..1");
  assertEquals(Array.from(g.data), [0, 0, 0, 128, 128, 128, 255, 255, 255, 255, 255, 255]);
  // f32 values whose ·255 is exactly 2.5 and 10.5: half to even gives 2 and 10 (half up: 3, 11).
  const ties = tensorToImage(
    new Float32Array([0.009803921915590763, 0.04117647185921669]),
    1,
    1,
    2,
    "0..1",
  );
  assertEquals([ties.data[0], ties.data[3]], [2, 10]);
  assertThrows(() => tensorToImage(new Float32Array(5), 3, 1, 2), RangeError, "needs 6");
  assertThrows(() => tensorToImage(new Float32Array(4), 2, 1, 2), RangeError, "C must be");
});

Deno.test("makeGrid places each image at its cell; PNG file round trip", async () => {
  const a = { width: 2, height: 1, channels: 3, data: new Uint8Array([1, 2, 3, 4, 5, 6]) };
  const b = { width: 1, height: 2, channels: 3, data: new Uint8Array([7, 8, 9, 10, 11, 12]) };
  const g = makeGrid([a, b, a], { cols: 2, pad: 1, background: 0 });
  assertEquals([g.width, g.height], [2 * 2 + 3, 2 * 2 + 3]);
  const px = (x: number, y: number) =>
    Array.from(g.data.subarray((y * g.width + x) * 3, (y * g.width + x) * 3 + 3));
  assertEquals([px(1, 1), px(2, 1), px(4, 1), px(4, 2), px(1, 4), px(0, 0), px(5, 1)], [
    [1, 2, 3],
    [4, 5, 6],
    [7, 8, 9],
    [10, 11, 12],
    [1, 2, 3],
    [0, 0, 0],
    [0, 0, 0],
  ]);
  assertEquals(makeGrid([a, a, a, a, a]).width, 3 * 2 + 4 * 2); // ⌈√5⌉ = 3 columns
  assertThrows(
    () => makeGrid([a, { ...a, channels: 4, data: new Uint8Array(8) }]),
    RangeError,
    "4 channels",
  );
  assertThrows(() => makeGrid([]), RangeError, "no images");
  const dir = await Deno.makeTempDir();
  try {
    await writePng(`${dir}/g.png`, g);
    const back = await readPng(`${dir}/g.png`);
    assertEquals(Array.from(back.data), Array.from(g.data));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
