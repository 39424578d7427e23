// LayerNorm over rows, one workgroup per row: WG threads stride over the row and combine
// their partial statistics through workgroup memory with a tree of log2(WG) steps.
//
// y = (x − mean)·rstd [·w + b] [·(1 + scale[batch]) + shift[batch]], where
// shift/scale rows are columns of a per-batch tensor `emb` (+ a row of `table`):
// PixArt's adaLN-single modulation without materialising the chunks. Each thread's
// partial variance is taken around its own first element and merged with Chan's
// formula, so a large mean does not cancel the variance.
override WG: u32 = 64u; // threads per workgroup, a power of two

struct LnParams {
  rows: u32, c: u32, rows_per_batch: u32, flags: u32,  // flags: 1 weight, 2 bias, 4 modulation, 8 table
  eps: f32, emb_row: u32, shift_col: u32, scale_col: u32,
  shift_t: u32, scale_t: u32, pad0: u32, pad1: u32,
}

@group(0) @binding(0) var<uniform> ln: LnParams;
@group(0) @binding(1) var<storage, read> x: array<DT>;
@group(0) @binding(2) var<storage, read> w: array<DT>;
@group(0) @binding(3) var<storage, read> bias: array<DT>;
@group(0) @binding(4) var<storage, read> emb: array<DT>;
@group(0) @binding(5) var<storage, read> table: array<DT>;
@group(0) @binding(6) var<storage, read_write> out: array<DT>;

var<workgroup> red_n: array<f32, WG>;
var<workgroup> red_a: array<f32, WG>;
var<workgroup> red_b: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) ng: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let row = wid.x + wid.y * ng.x;
  if (row >= ln.rows) { return; } // uniform per workgroup
  let base = row * ln.c;
  // Partial statistics of this thread's elements around its first element.
  let pivot = f32(x[base + min(lid, ln.c - 1u)]);
  var s1 = 0.0;
  var s2 = 0.0;
  var n = 0.0;
  for (var i = lid; i < ln.c; i += WG) {
    let d = f32(x[base + i]) - pivot;
    s1 += d;
    s2 += d * d;
    n += 1.0;
  }
  red_n[lid] = n;
  red_a[lid] = select(pivot, pivot + s1 / n, n > 0.0); // mean
  red_b[lid] = select(0.0, max(s2 - s1 * s1 / n, 0.0), n > 0.0); // M2
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (lid < s) {
      let na = red_n[lid];
      let nb = red_n[lid + s];
      let nn = na + nb;
      if (nb > 0.0) {
        let delta = red_a[lid + s] - red_a[lid];
        red_a[lid] += delta * nb / nn;
        red_b[lid] += red_b[lid + s] + delta * delta * na * nb / nn;
        red_n[lid] = nn;
      }
    }
  }
  workgroupBarrier();
  let mean = red_a[0];
  let rstd = inverseSqrt(red_b[0] / f32(ln.c) + ln.eps);
  let bt = row / ln.rows_per_batch;
  let eb = bt * ln.emb_row;
  for (var i = lid; i < ln.c; i += WG) {
    var y = (f32(x[base + i]) - mean) * rstd;
    if ((ln.flags & 1u) != 0u) { y *= f32(w[i]); }
    if ((ln.flags & 2u) != 0u) { y += f32(bias[i]); }
    if ((ln.flags & 4u) != 0u) {
      var sh = f32(emb[eb + ln.shift_col + i]);
      var sc = f32(emb[eb + ln.scale_col + i]);
      if ((ln.flags & 8u) != 0u) {
        sh += f32(table[ln.shift_t + i]);
        sc += f32(table[ln.scale_t + i]);
      }
      y = y * (1.0 + sc) + sh;
    }
    out[base + i] = DT(y);
  }
}
