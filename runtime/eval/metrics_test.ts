import { assert, assertAlmostEquals, assertThrows } from "../../tests/assert.ts";
import { cosine, gaussianTaps, type MetricImage, mse, psnr, ssim } from "./metrics.ts";

function img(
  H: number,
  W: number,
  C: number,
  f: (y: number, x: number, c: number) => number,
): MetricImage {
  const data = new Uint8Array(H * W * C);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) for (let c = 0; c < C; c++) data[(y * W + x) * C + c] = f(y, x, c);
  }
  return { width: W, height: H, channels: C, data };
}

// The same integer patterns as the numpy transcription of scikit-image's SSIM used to get
// the expected values (np.pad "symmetric" = scipy "reflect"; see the module doc).
const A = img(16, 13, 3, (y, x, c) => (y * 37 + x * 11 + c * 53 + ((x * y) % 7) * 19) % 256);
const B = img(
  16,
  13,
  3,
  (y, x, c) => (y * 37 + x * 11 + c * 53 + ((x * y) % 7) * 19 + ((x + 2 * y + c) % 5) * 9) % 256,
);

Deno.test("psnr: hand-computed values, ranges, identical inputs", () => {
  // MSE = (2² + 0) / 2 = 2 → 10·log10(255² / 2).
  assertAlmostEquals(psnr([10, 20], [12, 20], 255), 10 * Math.log10(65025 / 2), 1e-12);
  assertAlmostEquals(psnr([10, 20], [12, 20], "0..255"), 45.120504, 1e-6);
  // [-1, 1] data: R = 2; MSE = 0.01 → 10·log10(4 / 0.01) = 26.0206 dB.
  assertAlmostEquals(psnr([0.1, -0.1], [0.2, -0.2], "-1..1"), 26.0206, 1e-4);
  assertAlmostEquals(psnr([0.1, -0.1], [0.2, -0.2], "0..1"), 20, 1e-9);
  assert(psnr(new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 3]), 255) === Infinity);
  assertAlmostEquals(mse(new Float32Array([1, 2]), [3, 2]), 2, 0);
  assertThrows(() => psnr([1], [1, 2], 255), RangeError, "a has 1 values, b 2");
  assertThrows(() => psnr([], [], 255), RangeError, "empty");
  assertThrows(() => psnr([1], [1], 0), RangeError, "range");
});

Deno.test("cosine: hand-computed values and zero vectors", () => {
  assertAlmostEquals(cosine([3, 4], [4, 3]), 24 / 25, 1e-15);
  assertAlmostEquals(cosine([1, 2, 3], [2, 4, 6]), 1, 1e-15);
  assertAlmostEquals(cosine([1, 2], [-1, -2]), -1, 1e-15);
  assertAlmostEquals(cosine([1, 0], [0, 1]), 0, 0);
  assertAlmostEquals(cosine([0, 0], [0, 0]), 1, 0);
  assertAlmostEquals(cosine([0, 0], [1, 0]), 0, 0);
  assertThrows(() => cosine([1, 2], [1]), RangeError);
});

Deno.test("ssim: Gaussian taps as scipy (radius 5, σ 1.5, normalized)", () => {
  const w = gaussianTaps(1.5, 3.5);
  assert(w.length === 11, `11 taps, got ${w.length}`);
  assertAlmostEquals(w.reduce((a, b) => a + b, 0), 1, 1e-15);
  assertAlmostEquals(w[5] / w[4], Math.exp(0.5 / 2.25), 1e-12);
  assertAlmostEquals(w[0], w[10], 0);
});

Deno.test("ssim: identical = 1, constants hand-computed", () => {
  assertAlmostEquals(ssim(A, A), 1, 1e-12);
  // Constant planes p, q: variances 0, so S = (2pq + C1) / (p² + q² + C1), C1 = (0.01·255)².
  const c1 = 2.55 ** 2;
  const p = img(12, 12, 1, () => 100), q = img(12, 12, 1, () => 110);
  assertAlmostEquals(ssim(p, q), (22000 + c1) / (10000 + 12100 + c1), 1e-12);
  // Per channel, then the mean: channel 0 equal (1), channel 1 as above.
  const p2 = img(12, 12, 2, (_y, _x, c) => c ? 100 : 50);
  const q2 = img(12, 12, 2, (_y, _x, c) => c ? 110 : 50);
  assertAlmostEquals(ssim(p2, q2), (1 + (22000 + c1) / (10000 + 12100 + c1)) / 2, 1e-12);
});

Deno.test("ssim: matches the scikit-image Gaussian form (numpy transcription)", () => {
  assertAlmostEquals(ssim(A, B), 0.5919434802905134, 1e-12);
  const G1 = img(11, 11, 1, (y, x) => 40 + 10 * x + 3 * y);
  const G2 = img(11, 11, 1, (y, x) => 255 - 12 * y - (x % 3) * 20);
  assertAlmostEquals(ssim(G1, G2), -0.09402175141407589, 1e-12);
  // [-1, 1] floats with R = 2.
  const f = (im: MetricImage) => ({
    ...im,
    data: Float64Array.from(im.data, (v) => v / 127.5 - 1),
  });
  assertAlmostEquals(ssim(f(A), f(B), { range: "-1..1" }), 0.3359988991256446, 1e-12);
});

Deno.test("ssim: planar layout equals interleaved; symmetric; errors", () => {
  const toChw = (im: MetricImage) => {
    const { width: W, height: H, channels: C } = im;
    const d = new Float32Array(W * H * C);
    for (let i = 0; i < W * H; i++) {
      for (let c = 0; c < C; c++) d[c * W * H + i] = im.data[i * C + c];
    }
    return { ...im, data: d };
  };
  assertAlmostEquals(ssim(toChw(A), toChw(B), { layout: "chw" }), ssim(A, B), 1e-12);
  assertAlmostEquals(ssim(B, A), ssim(A, B), 1e-12);
  const small = img(10, 12, 1, () => 0);
  assertThrows(() => ssim(small, small), RangeError, "at least 11×11");
  assertThrows(() => ssim(A, img(16, 13, 1, () => 0)), RangeError, "16");
  assertThrows(
    () => ssim({ ...A, data: (A.data as Uint8Array).subarray(1) }, A),
    RangeError,
    "a.data",
  );
});
