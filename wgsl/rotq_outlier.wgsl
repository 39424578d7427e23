// Fused outlier-aware (DuQuant-style) rotation + per-token symmetric quantization, one
// pass: a workgroup of B threads takes ROWS token rows, reads them (f32/f16) times s
// (1/m of smoothing), multiplies every B-wide block by Q1 (one B×B matrix shared by all
// blocks), scatters the result through the zigzag permutation, multiplies every block by
// Q2, then writes int8 codes packed four per u32 and one scale per row (QUANT), or the
// transformed rows (!QUANT). Sums run sequentially over i from 0, as the CPU reference
// (runtime/reference/rotq.ts) does, so codes match it exactly.
override B: u32 = 128u;      // block size = threads
override ROWS: u32 = 1u;     // token rows per workgroup (≤ 4)
override KMAX: u32 = 1152u;  // row buffer size (≥ K)
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

var<workgroup> va: array<f32, KMAX * ROWS>;
var<workgroup> vb: array<f32, KMAX * ROWS>;
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
  let nb = K / B;

  for (var r = 0u; r < ROWS; r++) {
    let row = row0 + r;
    for (var k = j; k < K; k += B) {
      va[r * K + k] = select(0.0, f32(x[min(row, p.M - 1u) * K + k]) * s[k], row < p.M);
    }
  }
  workgroupBarrier();

  // Stage 1: y1 = blocks · Q1, written to the permuted position.
  for (var b = 0u; b < nb; b++) {
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var i = 0u; i < B; i++) {
      let q = q1[i * B + j];
      for (var r = 0u; r < ROWS; r++) { acc[r] = acc[r] + va[r * K + b * B + i] * q; }
    }
    let d = dest[b * B + j];
    for (var r = 0u; r < ROWS; r++) { vb[r * K + d] = acc[r]; }
  }
  workgroupBarrier();

  // Stage 2: out = blocks · Q2, back into va; per-row absmax on the way.
  var m = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
  for (var b = 0u; b < nb; b++) {
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var i = 0u; i < B; i++) {
      let q = q2[i * B + j];
      for (var r = 0u; r < ROWS; r++) { acc[r] = acc[r] + vb[r * K + b * B + i] * q; }
    }
    for (var r = 0u; r < ROWS; r++) {
      va[r * K + b * B + j] = acc[r];
      m[r] = max(m[r], abs(acc[r]));
    }
  }

  if (!QUANT) {
    workgroupBarrier();
    for (var r = 0u; r < ROWS; r++) {
      let row = row0 + r;
      if (row < p.M) {
        for (var k = j; k < K; k += B) { y[row * K + k] = DT(va[r * K + k]); }
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
    let delta = amax / qmax;
    let inv = select(0.0, 1.0 / delta, amax > 0.0);
    if (j == 0u) { scales[row] = delta; }
    for (var w = j; w < p.words; w += B) {
      var word = 0u;
      for (var i = 0u; i < 4u; i++) {
        let k = 4u * w + i;
        if (k < K) {
          let q = clamp(round(va[r * K + k] * inv), -qmax - 1.0, qmax);
          word |= (u32(i32(q)) & 0xffu) << (8u * i);
        }
      }
      codes[row * p.words + w] = word;
    }
  }
}
