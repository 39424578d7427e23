/**
 * PNG in and out (through fast-png), model output → 8-bit pixels, and sample grids.
 *
 * Images are row-major interleaved 8-bit (HWC): `data[(y * width + x) * channels + c]`.
 *
 * @module
 */
import { convertIndexedToRgb, decode, encode } from "fast-png";
import { CheckpointError } from "../errors.ts";

/** An 8-bit image, pixels interleaved row by row. */
export interface Image {
  /** Pixels per row. */
  width: number;
  /** Rows. */
  height: number;
  /** 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA). */
  channels: number;
  /** width × height × channels bytes. */
  data: Uint8Array;
}

function checkImage(
  what: string,
  data: Uint8Array,
  width: number,
  height: number,
  channels: number,
): void {
  if (!(data instanceof Uint8Array)) throw new TypeError(`${what}: data must be a Uint8Array`);
  for (const [k, v] of [["width", width], ["height", height]] as const) {
    if (!Number.isInteger(v) || v < 1 || v > 2 ** 31 - 1) {
      throw new RangeError(`${what}: ${k} must be a positive integer, got ${v}`);
    }
  }
  if (![1, 2, 3, 4].includes(channels)) {
    throw new RangeError(`${what}: channels must be 1, 2, 3 or 4, got ${channels}`);
  }
  if (data.length !== width * height * channels) {
    throw new RangeError(
      `${what}: data has ${data.length} bytes, ${width}×${height}×${channels} needs ${
        width * height * channels
      }`,
    );
  }
}

/** Encodes 8-bit pixels (`channels` per pixel, default RGB) as a PNG file. */
export function encodePng(
  data: Uint8Array,
  width: number,
  height: number,
  channels = 3,
): Uint8Array {
  checkImage("encodePng", data, width, height, channels);
  return encode({ width, height, data, channels, depth: 8 });
}

/**
 * Decodes a PNG to 8-bit pixels: palettes are expanded, 16-bit samples rounded to 8
 * bits and 1/2/4-bit gray scaled up. `name` (a path) is used in errors.
 */
export function decodePng(bytes: Uint8Array, name = "png"): Image {
  let p: ReturnType<typeof decode>;
  try {
    p = decode(bytes, { checkCrc: true });
  } catch (e) {
    throw new CheckpointError(name, `not a valid PNG: ${(e as Error).message}`);
  }
  const { width, height } = p;
  if (p.palette) {
    const data = convertIndexedToRgb(p);
    return { width, height, channels: data.length / (width * height), data };
  }
  const n = width * height * p.channels;
  const data = new Uint8Array(n);
  if (p.depth === 8) {
    data.set(p.data.subarray(0, n));
  } else if (p.depth === 16) {
    for (let i = 0; i < n; i++) data[i] = Math.round((p.data[i] * 255) / 65535);
  } else {
    // 1/2/4-bit gray: packed rows, each row starting on a byte.
    const d = p.depth;
    const rowBytes = Math.ceil((d * p.channels * width) / 8);
    const max = (1 << d) - 1;
    for (let y = 0; y < height; y++) {
      for (let i = 0; i < width * p.channels; i++) {
        const bit = i * d;
        const v = (p.data[y * rowBytes + (bit >> 3)] >> (8 - d - (bit & 7))) & max;
        data[y * width * p.channels + i] = Math.round((v * 255) / max);
      }
    }
  }
  return { width, height, channels: p.channels, data };
}

/** Writes an image as a PNG file. */
export async function writePng(path: string, img: Image): Promise<void> {
  await Deno.writeFile(path, encodePng(img.data, img.width, img.height, img.channels));
}

/** Reads a PNG file. */
export async function readPng(path: string): Promise<Image> {
  return decodePng(await Deno.readFile(path), path);
}

/** The value range of model output: "-1..1" (diffusion models) or "0..1". */
export type PixelRange = "-1..1" | "0..1";

/**
 * Converts one image of model output, planar [C, H, W] f32, to 8-bit pixels: values
 * mapped from `range` to 0..255, clamped and rounded half to even as diffusers'
 * numpy_to_pil does (NaN becomes 0). C = 1 is
 * expanded to RGB; C = 3 or 4 is kept.
 */
export function tensorToImage(
  chw: Float32Array,
  C: number,
  H: number,
  W: number,
  range: PixelRange = "-1..1",
): Image {
  if (![1, 3, 4].includes(C)) throw new RangeError(`tensorToImage: C must be 1, 3 or 4, got ${C}`);
  if (!Number.isInteger(H) || !Number.isInteger(W) || H < 1 || W < 1) {
    throw new RangeError(`tensorToImage: H and W must be positive integers, got ${H}×${W}`);
  }
  if (chw.length !== C * H * W) {
    throw new RangeError(
      `tensorToImage: chw has ${chw.length} values, ${C}×${H}×${W} needs ${C * H * W}`,
    );
  }
  if (range !== "-1..1" && range !== "0..1") {
    throw new RangeError(`tensorToImage: range must be "-1..1" or "0..1", got "${range}"`);
  }
  const half = range === "-1..1";
  const outC = C === 1 ? 3 : C;
  const data = new Uint8Array(H * W * outC);
  const plane = H * W;
  for (let c = 0; c < outC; c++) {
    const src = (C === 1 ? 0 : c) * plane;
    for (let i = 0; i < plane; i++) {
      data[i * outC + c] = toByte(chw[src + i], half);
    }
  }
  return { width: W, height: H, channels: outC, data };
}

/**
 * One value to a byte exactly as diffusers does it, in f32: (x / 2 + 0.5) clamped to
 * [0, 1], times 255, rounded half to even (numpy's round). NaN becomes 0.
 */
function toByte(x: number, half: boolean): number {
  let t = half ? Math.fround(Math.fround(x * 0.5) + 0.5) : x;
  if (!(t > 0)) return 0; // also NaN
  if (t > 1) t = 1;
  const v = Math.fround(t * 255);
  const r = Math.round(v);
  return r - v === 0.5 && (r & 1) === 1 ? r - 1 : r;
}

/** Options of makeGrid. */
export interface GridOptions {
  /** Images per row (default ⌈√n⌉). */
  cols?: number;
  /** Pixels between and around cells (default 2). */
  pad?: number;
  /** Fill value of the padding, one byte per channel (default 255: white, opaque). */
  background?: number;
}

/**
 * Lays images out in a grid (row-major, `cols` per row), each in a cell the size of
 * the largest, top-left aligned. All images must have the same channel count.
 */
export function makeGrid(images: readonly Image[], opts: GridOptions = {}): Image {
  if (images.length === 0) throw new RangeError("makeGrid: no images");
  const ch = images[0].channels;
  images.forEach((im, i) => {
    checkImage(`makeGrid: images[${i}]`, im.data, im.width, im.height, im.channels);
    if (im.channels !== ch) {
      throw new RangeError(
        `makeGrid: images[${i}] has ${im.channels} channels, images[0] has ${ch}`,
      );
    }
  });
  const cols = opts.cols ?? Math.ceil(Math.sqrt(images.length));
  const pad = opts.pad ?? 2;
  const bg = opts.background ?? 255;
  if (!Number.isInteger(cols) || cols < 1) {
    throw new RangeError(`makeGrid: cols must be a positive integer, got ${cols}`);
  }
  if (!Number.isInteger(pad) || pad < 0) {
    throw new RangeError(`makeGrid: pad must be a non-negative integer, got ${pad}`);
  }
  if (!Number.isInteger(bg) || bg < 0 || bg > 255) {
    throw new RangeError(`makeGrid: background must be in 0..255, got ${bg}`);
  }
  const rows = Math.ceil(images.length / cols);
  const cw = Math.max(...images.map((im) => im.width));
  const chh = Math.max(...images.map((im) => im.height));
  const width = cols * cw + (cols + 1) * pad;
  const height = rows * chh + (rows + 1) * pad;
  const data = new Uint8Array(width * height * ch).fill(bg);
  images.forEach((im, k) => {
    const x0 = pad + (k % cols) * (cw + pad);
    const y0 = pad + Math.floor(k / cols) * (chh + pad);
    for (let y = 0; y < im.height; y++) {
      const row = im.data.subarray(y * im.width * ch, (y + 1) * im.width * ch);
      data.set(row, ((y0 + y) * width + x0) * ch);
    }
  });
  return { width, height, channels: ch, data };
}
