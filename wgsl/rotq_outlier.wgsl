// Fused outlier-aware (DuQuant-style) rotation + per-token symmetric quantization, one
// pass: a workgroup of B threads takes ROWS token rows, reads them (f32/f16) times s
// (1/m of smoothing), multiplies every B-wide block by Q1 (one B×B matrix shared by all
// blocks), scatters the result through the zigzag permutation, multiplies every block by
// Q2, then writes int8 codes packed four per u32 and one scale per row (QUANT), or the
// transformed rows (!QUANT).
//
// Thread j owns output column j of every block. The block products are register-tiled:
// NBC blocks × ROWS rows of accumulators, four Q entries per step against one vec4 of the
// row held in workgroup memory (a broadcast read), so a step does 4·NBC·ROWS multiply-adds
// for 4 global and NBC·ROWS workgroup loads. Each sum still runs sequentially over i
// from 0, as the CPU reference (runtime/reference/rotq.ts) does, so codes match it exactly.
// Both stages' block product is wgsl/rotq_outlier_product.wgsl, pasted at the //@ lines.
override B: u32 = 128u;      // block size = threads (a power of two ≥ 4)
override ROWS: u32 = 1u;     // token rows per workgroup (≤ 4)
override NBC: u32 = 4u;      // blocks per register tile (≤ 4)
override KMAX: u32 = 1152u;  // row buffer size (≥ K, a multiple of 4)
override QUANT: bool = true;
override BITS: u32 = 8u;

struct Params { M: u32, K: u32, words: u32, pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<DT>;
@group(0) @binding(2) var<storage, read> s: array<f32>;
@group(0) @binding(3) var<storage, read> q1: array<f32>;
@group(0) @binding(4) var<storage, read> q2: array<f32>;
@group(0) @binding(5) var<storage, read> dest: array<u32>;   // y1[k] goes to position dest[k]
@group(0) @binding(6) var<storage, read_write> codes: array<u32>;
@group(0) @binding(7) var<storage, read_write> scales: array<f32>;
@group(0) @binding(8) var<storage, read_write> y: array<DT>;

var<workgroup> va: array<vec4<f32>, KMAX * ROWS / 4u>;
var<workgroup> vb: array<vec4<f32>, KMAX * ROWS / 4u>;
var<workgroup> red: array<f32, B * ROWS>;

@compute @workgroup_size(B)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) ng: vec3<u32>,
  @builtin(local_invocation_index) j: u32,
) {
  let row0 = (wid.x + wid.y * ng.x) * ROWS;
  if (row0 >= p.M) { return; }
  let K = p.K;
  let K4 = K / 4u;
  let B4 = B / 4u;
  let nb = K / B;

  for (var r = 0u; r < ROWS; r++) {
    let row = min(row0 + r, p.M - 1u); // past the end: a copy of the last row, never written
    for (var w = j; w < K4; w += B) {
      let o = row * K + 4u * w;
      let v = vec4<f32>(f32(x[o]), f32(x[o + 1u]), f32(x[o + 2u]), f32(x[o + 3u]));
      va[r * K4 + w] = v * vec4<f32>(s[4u * w], s[4u * w + 1u], s[4u * w + 2u], s[4u * w + 3u]);
    }
  }
  workgroupBarrier();

  // Stage 1: y1 = blocks · Q1, each output written to its permuted position.
  for (var b0 = 0u; b0 < nb; b0 += NBC) {
    //@product_q1_va
    for (var c = 0u; c < NBC; c++) {
      if (b0 + c < nb) {
        let d = dest[(b0 + c) * B + j];
        for (var r = 0u; r < ROWS; r++) { vb[r * K4 + d / 4u][d % 4u] = acc[c * 4u + r]; }
      }
    }
  }
  workgroupBarrier();

  // Stage 2: out = blocks · Q2, back into va; per-row absmax on the way.
  var m = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
  for (var b0 = 0u; b0 < nb; b0 += NBC) {
    //@product_q2_vb
    for (var c = 0u; c < NBC; c++) {
      if (b0 + c < nb) {
        let k = (b0 + c) * B + j;
        for (var r = 0u; r < ROWS; r++) {
          let a = acc[c * 4u + r];
          va[r * K4 + k / 4u][k % 4u] = a;
          m[r] = max(m[r], abs(a));
        }
      }
    }
  }
  workgroupBarrier();

  if (!QUANT) {
    for (var r = 0u; r < ROWS; r++) {
      let row = row0 + r;
      if (row < p.M) {
        for (var w = j; w < K4; w += B) {
          let v = va[r * K4 + w];
          let o = row * K + 4u * w;
          y[o] = DT(v.x);
          y[o + 1u] = DT(v.y);
          y[o + 2u] = DT(v.z);
          y[o + 3u] = DT(v.w);
        }
      }
    }
    return;
  }

  for (var r = 0u; r < ROWS; r++) { red[r * B + j] = m[r]; }
  workgroupBarrier();
  for (var w = B / 2u; w > 0u; w /= 2u) {
    if (j < w) {
      for (var r = 0u; r < ROWS; r++) { red[r * B + j] = max(red[r * B + j], red[r * B + j + w]); }
    }
    workgroupBarrier();
  }

  let qmax = f32((1u << (BITS - 1u)) - 1u);
  for (var r = 0u; r < ROWS; r++) {
    let row = row0 + r;
    if (row >= p.M) { break; }
    let amax = red[r * B];
    let d = sym_grid(amax, qmax);
    if (j == 0u) { scales[row] = d.x; }
    for (var w = j; w < K4; w += B) {
      codes[row * p.words + w] = pack_sym(va[r * K4 + w], d.y, qmax);
    }
  }
}
