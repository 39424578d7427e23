/**
 * Image and tensor quality metrics on the CPU: PSNR, SSIM and cosine similarity.
 *
 * These score a model's output against a reference output of the same prompt and seed
 * (the FP32 model vs a quantized plan). All arithmetic is in f64.
 *
 * - {@linkcode psnr}: 10·log10(R² / MSE) in dB, R the data range (255 for 8-bit images, 2
 *   for [-1, 1] model output, 1 for [0, 1]); `Infinity` when the inputs are equal.
 * - {@linkcode ssim}: the Wang et al. (2004) mean SSIM with an 11×11 Gaussian window (σ 1.5),
 *   K1 0.01, K2 0.03 and population (co)variances, per channel, then the mean over channels.
 *   It matches scikit-image's `structural_similarity(a, b, channel_axis=-1,
 *   gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)`: the
 *   local statistics come from a separable Gaussian filter truncated at 3.5σ (radius 5)
 *   with scipy's "reflect" border, and the SSIM map is averaged without its 5-pixel border.
 * - {@linkcode cosine}: cosine similarity of two flattened tensors (latents or pixels).
 *
 * @module
 */

/** Numbers metrics accept: typed arrays or plain arrays. */
export type Values = ArrayLike<number>;

/**
 * The value range of the compared data: a number (max − min), or one of the usual names:
 * "0..255" (8-bit pixels, 255), "-1..1" (model output, 2), "0..1" (1).
 */
export type DataRange = number | "0..255" | "-1..1" | "0..1";

/** An image whose pixels are interleaved (HWC), as runtime/io/png.ts's `Image`. */
export interface MetricImage {
  /** Pixels per row. */
  width: number;
  /** Rows. */
  height: number;
  /** Values per pixel. */
  channels: number;
  /** width × height × channels values, `data[(y * width + x) * channels + c]`. */
  data: Values;
}

/** Resolves a {@linkcode DataRange} to the number R. */
export function dataRange(range: DataRange): number {
  const r = range === "0..255" ? 255 : range === "-1..1" ? 2 : range === "0..1" ? 1 : range;
  if (typeof r !== "number" || !Number.isFinite(r) || r <= 0) {
    throw new RangeError(
      `range must be a positive number or "0..255", "-1..1", "0..1", got ${String(range)}`,
    );
  }
  return r;
}

function checkPair(a: Values, b: Values, what: string): void {
  if (a == null || typeof a.length !== "number") throw new TypeError(`${what}: a must be an array`);
  if (b == null || typeof b.length !== "number") throw new TypeError(`${what}: b must be an array`);
  if (a.length !== b.length) {
    throw new RangeError(`${what}: a has ${a.length} values, b ${b.length}`);
  }
  if (a.length === 0) throw new RangeError(`${what}: empty input`);
}

/** Mean squared error of two equally long arrays. */
export function mse(a: Values, b: Values): number {
  checkPair(a, b, "mse");
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    s += d * d;
  }
  return s / a.length;
}

/**
 * Peak signal-to-noise ratio in dB: 10·log10(R² / MSE), R = `range` (see
 * {@linkcode DataRange}; state it: 255 for 8-bit images, "-1..1" for model output).
 * Returns `Infinity` for identical inputs (as scikit-image's peak_signal_noise_ratio).
 */
export function psnr(a: Values, b: Values, range: DataRange): number {
  const r = dataRange(range);
  const e = mse(a, b);
  if (Number.isNaN(e)) return NaN;
  return e === 0 ? Infinity : 10 * Math.log10((r * r) / e);
}

/**
 * Cosine similarity of two flattened tensors: a·b / (|a| |b|), in [-1, 1]. Two all-zero
 * inputs give 1 (they are equal); one all-zero input gives 0.
 */
export function cosine(a: Values, b: Values): number {
  checkPair(a, b, "cosine");
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  if (aa === 0 && bb === 0) return 1;
  if (aa === 0 || bb === 0) return 0;
  return Math.max(-1, Math.min(1, ab / (Math.sqrt(aa) * Math.sqrt(bb))));
}

/** Options of {@linkcode ssim}. */
export interface SsimOptions {
  /** Data range R (default 255: 8-bit pixels). */
  range?: DataRange;
  /** Gaussian σ (default 1.5). */
  sigma?: number;
  /** Window radius in σ (default 3.5: radius 5, an 11×11 window, as scikit-image). */
  truncate?: number;
  /** Stability constant K1 (default 0.01). */
  k1?: number;
  /** Stability constant K2 (default 0.03). */
  k2?: number;
  /** "hwc" (interleaved, default) or "chw" (planar, as model output). */
  layout?: "hwc" | "chw";
}

/** The normalized 1-D Gaussian taps of scipy.ndimage.gaussian_filter1d. */
export function gaussianTaps(sigma: number, truncate: number): Float64Array {
  const r = Math.trunc(truncate * sigma + 0.5);
  const w = new Float64Array(2 * r + 1);
  let s = 0;
  for (let i = -r; i <= r; i++) s += w[i + r] = Math.exp((-0.5 * i * i) / (sigma * sigma));
  for (let i = 0; i < w.length; i++) w[i] /= s;
  return w;
}

/** scipy's "reflect" (half-sample symmetric) index: d c b a | a b c d | d c b a. */
function reflect(i: number, n: number): number {
  const p = 2 * n;
  let m = ((i % p) + p) % p;
  if (m >= n) m = p - 1 - m;
  return m;
}

/** Separable Gaussian filter of one H×W plane with the "reflect" border. */
function blur(src: Float64Array, H: number, W: number, taps: Float64Array): Float64Array {
  const r = (taps.length - 1) / 2;
  const tmp = new Float64Array(H * W);
  const out = new Float64Array(H * W);
  // Axis 0 (rows) first, then axis 1, as ndimage applies the 1-D filters.
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      let s = 0;
      for (let k = -r; k <= r; k++) s += taps[k + r] * src[reflect(y + k, H) * W + x];
      tmp[y * W + x] = s;
    }
  }
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      let s = 0;
      for (let k = -r; k <= r; k++) s += taps[k + r] * tmp[y * W + reflect(x + k, W)];
      out[y * W + x] = s;
    }
  }
  return out;
}

/** Mean SSIM of one H×W channel pair (f64 planes). */
function ssimPlane(
  x: Float64Array,
  y: Float64Array,
  H: number,
  W: number,
  taps: Float64Array,
  c1: number,
  c2: number,
): number {
  const n = H * W;
  const xx = new Float64Array(n), yy = new Float64Array(n), xy = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    xx[i] = x[i] * x[i];
    yy[i] = y[i] * y[i];
    xy[i] = x[i] * y[i];
  }
  const ux = blur(x, H, W, taps), uy = blur(y, H, W, taps);
  const uxx = blur(xx, H, W, taps), uyy = blur(yy, H, W, taps), uxy = blur(xy, H, W, taps);
  const pad = (taps.length - 1) / 2;
  let s = 0, count = 0;
  for (let r = pad; r < H - pad; r++) {
    for (let c = pad; c < W - pad; c++) {
      const i = r * W + c;
      const vx = uxx[i] - ux[i] * ux[i];
      const vy = uyy[i] - uy[i] * uy[i];
      const vxy = uxy[i] - ux[i] * uy[i];
      const num = (2 * ux[i] * uy[i] + c1) * (2 * vxy + c2);
      const den = (ux[i] * ux[i] + uy[i] * uy[i] + c1) * (vx + vy + c2);
      s += num / den;
      count++;
    }
  }
  return s / count;
}

function checkImage(what: string, im: MetricImage): void {
  if (im == null || typeof im !== "object") throw new TypeError(`${what} must be an image`);
  for (const k of ["width", "height", "channels"] as const) {
    if (!Number.isInteger(im[k]) || im[k] < 1) {
      throw new RangeError(`${what}.${k} must be a positive integer, got ${im[k]}`);
    }
  }
  if (im.data == null || im.data.length !== im.width * im.height * im.channels) {
    throw new RangeError(
      `${what}.data has ${im.data?.length} values, ${im.width}×${im.height}×${im.channels} needs ${
        im.width * im.height * im.channels
      }`,
    );
  }
}

/**
 * Mean structural similarity of two images of the same size (see the module doc: the
 * scikit-image Gaussian form, per channel then averaged). Both sides must be at least
 * as large as the window (11 pixels by default). 1 for identical images.
 */
export function ssim(a: MetricImage, b: MetricImage, opts: SsimOptions = {}): number {
  checkImage("a", a);
  checkImage("b", b);
  if (a.width !== b.width || a.height !== b.height || a.channels !== b.channels) {
    throw new RangeError(
      `ssim: a is ${a.width}×${a.height}×${a.channels}, b ${b.width}×${b.height}×${b.channels}`,
    );
  }
  const R = dataRange(opts.range ?? 255);
  const sigma = opts.sigma ?? 1.5;
  const truncate = opts.truncate ?? 3.5;
  if (!(sigma > 0) || !(truncate > 0)) throw new RangeError("ssim: sigma and truncate must be > 0");
  const taps = gaussianTaps(sigma, truncate);
  const { width: W, height: H, channels: C } = a;
  if (W < taps.length || H < taps.length) {
    throw new RangeError(
      `ssim: images must be at least ${taps.length}×${taps.length} (the window), got ${W}×${H}`,
    );
  }
  const c1 = ((opts.k1 ?? 0.01) * R) ** 2;
  const c2 = ((opts.k2 ?? 0.03) * R) ** 2;
  const planar = (opts.layout ?? "hwc") === "chw";
  const n = H * W;
  let total = 0;
  const x = new Float64Array(n), y = new Float64Array(n);
  for (let c = 0; c < C; c++) {
    for (let i = 0; i < n; i++) {
      const j = planar ? c * n + i : i * C + c;
      x[i] = a.data[j];
      y[i] = b.data[j];
    }
    total += ssimPlane(x, y, H, W, taps, c1, c2);
  }
  return total / C;
}
