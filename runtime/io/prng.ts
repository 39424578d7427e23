/**
 * The documented, seeded PRNG behind every random tensor of webdit (initial noise,
 * test data, random weights). Same seed, same numbers, on every machine and adapter:
 * the noise is drawn on the CPU and uploaded.
 *
 * Uniforms: xoshiro128** (Blackman & Vigna) seeded by splitmix32 from a 32-bit seed.
 * Normals: Box–Muller, both outputs used, u1 in (0, 1] so log(u1) is finite, computed
 * in double precision and rounded to f32.
 *
 * @module
 */

function splitmix32(state: number): [number, number] {
  state = (state + 0x9e3779b9) >>> 0;
  let z = state;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return [state, (z ^ (z >>> 16)) >>> 0];
}

/** A seeded generator of uniform and normal numbers. */
export class Prng {
  #s = new Uint32Array(4);
  #spare: number | undefined;

  /** Seeds the generator; `seed` is taken modulo 2^32. */
  constructor(seed: number) {
    if (!Number.isFinite(seed) || !Number.isInteger(seed)) {
      throw new TypeError(`Seed must be an integer, got ${seed}`);
    }
    let st = (seed >>> 0) || 0;
    for (let i = 0; i < 4; i++) {
      const [next, out] = splitmix32(st);
      st = next;
      this.#s[i] = out;
    }
  }

  /** The next 32 random bits as an unsigned integer (xoshiro128**). */
  nextU32(): number {
    const s = this.#s;
    const r = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return r;
  }

  /** A uniform number in [0, 1) with 32 bits of resolution. */
  uniform(): number {
    return this.nextU32() / 4294967296;
  }

  /** A standard normal number (Box–Muller). */
  normal(): number {
    if (this.#spare !== undefined) {
      const v = this.#spare;
      this.#spare = undefined;
      return v;
    }
    const u1 = (this.nextU32() + 1) / 4294967296; // (0, 1]
    const u2 = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u1));
    this.#spare = r * Math.sin(2 * Math.PI * u2);
    return r * Math.cos(2 * Math.PI * u2);
  }

  /** `n` standard normals as f32. */
  normals(n: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.normal();
    return out;
  }

  /** `n` uniforms in [lo, hi) as f32. */
  uniforms(n: number, lo = 0, hi = 1): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * this.uniform();
    return out;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
