// Fused randomised block-Hadamard rotation + per-token symmetric quantization, one pass:
// one workgroup per token row reads the row (f32/f16), multiplies by s = signs/(m·√BLOCK)
// (random ±1 diagonal, smoothing and normalisation in one factor), runs the fast
// Walsh–Hadamard butterflies of every BLOCK-wide block in workgroup memory, then writes
// int8 codes packed four per u32 and the row's scale (QUANT), or the rotated row (!QUANT).
// Every butterfly is (a + b, a − b) in f32, stages h = 1, 2, 4, … in order: the CPU
// reference (runtime/reference/rotq.ts) repeats them bit for bit.
// Rows wider than workgroup memory (FLUX's 12288-wide MLP input) go through in chunks of
// CHUNK columns (whole blocks: butterflies never cross a block); when quantizing, each
// chunk's rotated values are parked in the scratch z until the row's absmax is known.
// With GROUP > 0 each run of GROUP rotated values gets its own scale, a thread a group
// (rotq_groups.wgsl, appended by the host).
override WG: u32 = 128u;      // threads (a power of two)
override BLOCK: u32 = 128u;   // Hadamard block (a power of two dividing K)
override CHUNK: u32 = 1152u;  // columns in workgroup memory at once: K, or a multiple of BLOCK
override QUANT: bool = true;  // write codes + scales (else the rotated row)
override BITS: u32 = 8u;      // activation bits (codes in [−2^(BITS−1), 2^(BITS−1) − 1])
override GROUP: u32 = 0u;     // values a scale (a multiple of 4 dividing K); 0: the row
override ASYM: bool = false;  // grouped: levels from each group's min to its max

struct Params { M: u32, K: u32, words: u32, pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<DT>;
@group(0) @binding(2) var<storage, read> s: array<f32>;
@group(0) @binding(3) var<storage, read_write> codes: array<u32>;
@group(0) @binding(4) var<storage, read_write> scales: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<DT>;
@group(0) @binding(6) var<storage, read_write> z: array<f32>; // [M, K] scratch when chunked

var<workgroup> buf: array<f32, CHUNK>;
var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) ng: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let row = wid.x + wid.y * ng.x;
  if (row >= p.M) { return; }
  let K = p.K;
  let base = row * K;

  let chunked = CHUNK < K;
  var m = 0.0; // this thread's absmax of the rotated row
  for (var c0 = 0u; c0 < K; c0 += CHUNK) {
    let n = min(CHUNK, K - c0);
    workgroupBarrier(); // the previous chunk is no longer read
    // Load and scale: the one multiply happens before any butterfly (no FMA contraction).
    for (var k = lid; k < n; k += WG) { buf[k] = f32(x[base + c0 + k]) * s[c0 + k]; }
    workgroupBarrier();

    // Stages h = 1 and 2 in registers, four neighbouring values per thread.
    if (BLOCK >= 4u) {
      for (var g = lid; g < n / 4u; g += WG) {
        let i = 4u * g;
        let a0 = buf[i]; let a1 = buf[i + 1u]; let a2 = buf[i + 2u]; let a3 = buf[i + 3u];
        let b0 = a0 + a1; let b1 = a0 - a1; let b2 = a2 + a3; let b3 = a2 - a3;
        buf[i] = b0 + b2; buf[i + 1u] = b1 + b3; buf[i + 2u] = b0 - b2; buf[i + 3u] = b1 - b3;
      }
    } else if (BLOCK == 2u) {
      for (var g = lid; g < n / 2u; g += WG) {
        let a = buf[2u * g]; let b = buf[2u * g + 1u];
        buf[2u * g] = a + b; buf[2u * g + 1u] = a - b;
      }
    }
    workgroupBarrier();

    // Stages h = 4 … BLOCK/2 in workgroup memory.
    for (var h = 4u; h < BLOCK; h *= 2u) {
      for (var t = lid; t < n / 2u; t += WG) {
        let i = (t / h) * 2u * h + t % h;
        let a = buf[i];
        let b = buf[i + h];
        buf[i] = a + b;
        buf[i + h] = a - b;
      }
      workgroupBarrier();
    }

    for (var k = lid; k < n; k += WG) {
      if (!QUANT) {
        y[base + c0 + k] = DT(buf[k]);
      } else {
        m = max(m, abs(buf[k]));
        if (chunked) { z[base + c0 + k] = buf[k]; }
      }
    }
  }
  if (!QUANT) { return; }
  storageBarrier(); // z as written by every thread of the row (chunked rows); buf is already
  // settled: every butterfly stage ends at a barrier, and the read-outs only read it
  if (GROUP > 0u) {
    quant_groups(row, base, lid, WG); // rotq_groups.wgsl
    return;
  }

  // Row absmax: the per-thread maxima, then a tree over the workgroup.
  red[lid] = m;
  workgroupBarrier();
  for (var w = WG / 2u; w > 0u; w /= 2u) {
    if (lid < w) { red[lid] = max(red[lid], red[lid + w]); }
    workgroupBarrier();
  }
  let qmax = f32((1u << (BITS - 1u)) - 1u);
  let d = sym_grid(red[0], qmax);
  if (lid == 0u) { scales[row] = d.x; }
  // Codes: four per word, byte i = column 4w + i, zero past K.
  for (var w = lid; w < p.words; w += WG) {
    codes[row * p.words + w] = pack_sym(rotated4_at(base, 4u * w), d.y, qmax);
  }
}

// The rotated value at column k of the row at base (workgroup memory, or z for chunked rows).
fn rotated_at(base: u32, k: u32) -> f32 {
  if (CHUNK < p.K) { return z[base + k]; }
  return buf[k];
}

// Columns k..k+3 of the rotated row at base, zero past K (the codes' tail).
fn rotated4_at(base: u32, k: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  for (var i = 0u; i < 4u; i++) {
    if (k + i < p.K) { v[i] = rotated_at(base, k + i); }
  }
  return v;
}
