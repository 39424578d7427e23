/**
 * PAROAttention's candidate token orders of an h×w grid (METHODS.md §3): row-major,
 * column-major and tiled orders, by name, and permutation helpers.
 *
 * Convention: a permutation `perm` maps a position in the reordered sequence to the raster
 * token it holds (perm[i] = token).
 *
 * @module
 */
/** A named token order of an h×w grid. */
export interface PermCandidate {
  /** "hw", "wh", "tile8x8_hw", … */
  name: string;
  /** perm[i] = raster token at position i. */
  perm: Uint32Array;
}

/** Row-major order, or column-major order ("wh") of an h×w grid. */
function gridOrder(h: number, w: number, colMajor: boolean): Uint32Array {
  const p = new Uint32Array(h * w);
  let i = 0;
  if (colMajor) { for (let c = 0; c < w; c++) for (let r = 0; r < h; r++) p[i++] = r * w + c; }
  else for (let r = 0; r < h; r++) for (let c = 0; c < w; c++) p[i++] = r * w + c;
  return p;
}

/**
 * Tiles of th×tw grid cells (clipped at the edges), tiles visited in HW (row-major) or WH
 * order and cells inside a tile in the same order.
 */
export function tileOrder(h: number, w: number, th: number, tw: number, wh: boolean): Uint32Array {
  const p = new Uint32Array(h * w);
  let i = 0;
  const ty = Math.ceil(h / th);
  const tx = Math.ceil(w / tw);
  const cell = (y0: number, x0: number) => {
    const y1 = Math.min(h, y0 + th);
    const x1 = Math.min(w, x0 + tw);
    if (wh) { for (let x = x0; x < x1; x++) for (let y = y0; y < y1; y++) p[i++] = y * w + x; }
    else for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) p[i++] = y * w + x;
  };
  if (wh) { for (let b = 0; b < tx; b++) for (let a = 0; a < ty; a++) cell(a * th, b * tw); }
  else for (let a = 0; a < ty; a++) for (let b = 0; b < tx; b++) cell(a * th, b * tw);
  return p;
}

/** Options of {@linkcode candidatePermutations}. */
export interface CandidateOptions {
  /**
   * Add rectangular tiles of 4×16 and 16×4 cells (64 tokens each): other block shapes of
   * the same size, kept as a measured extension (bench/paro_ablation.ts).
   */
  extended?: boolean;
}

/**
 * The candidate orders of an h×w grid: row-major (hw), column-major (wh) and 8×8 tiles
 * (one 64-token block each) in HW and WH order; with `extended`, 4×16 and 16×4 tiles.
 * Orders that equal an earlier one on this grid (e.g. 8×8 tiles of an 8-wide grid) are
 * left out.
 */
export function candidatePermutations(
  h: number,
  w: number,
  opts: CandidateOptions = {},
): PermCandidate[] {
  if (!Number.isInteger(h) || !Number.isInteger(w) || h < 1 || w < 1) {
    throw new RangeError(`candidatePermutations: grid must be positive integers, got ${h}×${w}`);
  }
  const list: PermCandidate[] = [
    { name: "hw", perm: gridOrder(h, w, false) },
    { name: "wh", perm: gridOrder(h, w, true) },
    { name: "tile8x8_hw", perm: tileOrder(h, w, 8, 8, false) },
    { name: "tile8x8_wh", perm: tileOrder(h, w, 8, 8, true) },
  ];
  if (opts.extended) {
    list.push(
      { name: "tile4x16_hw", perm: tileOrder(h, w, 4, 16, false) },
      { name: "tile16x4_hw", perm: tileOrder(h, w, 16, 4, false) },
    );
  }
  const out: PermCandidate[] = [];
  for (const c of list) {
    if (!out.some((o) => o.perm.every((v, i) => v === c.perm[i]))) out.push(c);
  }
  return out;
}

/** The permutation of a named candidate (see {@linkcode candidatePermutations}). */
export function permutationByName(name: string, h: number, w: number): Uint32Array {
  if (name === "hw" || name === "wh") return gridOrder(h, w, name === "wh");
  const m = /^tile(\d+)x(\d+)_(hw|wh)$/.exec(name);
  if (!m) throw new RangeError(`Unknown token order "${name}"`);
  return tileOrder(h, w, Number(m[1]), Number(m[2]), m[3] === "wh");
}

/** The inverse permutation: inv[perm[i]] = i. */
export function invertPermutation(perm: ArrayLike<number>): Uint32Array {
  const inv = new Uint32Array(perm.length);
  for (let i = 0; i < perm.length; i++) inv[perm[i]] = i;
  return inv;
}
