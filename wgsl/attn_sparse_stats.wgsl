// PARO calibration: block statistics of one head's post-softmax map P [T, T] (raster
// order) under each candidate order, accumulated into the stats buffer (+=), so a map is
// never read back. One workgroup per (block, candidate), one thread per row of the block:
// for block (qb, kb) of positions it sums P[perm[i], perm[j]], counts entries below the
// near-zero threshold and takes the max; then stats[.., c, blk] += (mass, ≥ 90% near zero
// ? 1 : 0, max / mean) — mean over the block's n entries, and 1 for an all-zero block.
struct Params {
  t: u32, nb: u32, base: u32, c_stride: u32,
  threshold: f32, pad0: u32, pad1: u32, pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> map: array<f32>;
@group(0) @binding(2) var<storage, read> perms: array<u32>;
@group(0) @binding(3) var<storage, read_write> stats: array<f32>;

var<workgroup> rsum: array<f32, 64>;
var<workgroup> rmax: array<f32, 64>;
var<workgroup> rcnt: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let blk = wid.x;
  let c = wid.y;
  let qb = blk / p.nb;
  let kb = blk % p.nb;
  let pc = c * p.t;
  let i = qb * 64u + lid;
  var s = 0.0;
  var mx = 0.0;
  var n = 0.0;
  if (i < p.t) {
    let rowb = perms[pc + i] * p.t;
    let j1 = min(p.t, kb * 64u + 64u);
    for (var j = kb * 64u; j < j1; j++) {
      let x = map[rowb + perms[pc + j]];
      s += x;
      mx = max(mx, x);
      n += select(0.0, 1.0, x < p.threshold);
    }
  }
  rsum[lid] = s;
  rmax[lid] = mx;
  rcnt[lid] = n;
  workgroupBarrier();
  for (var k = 32u; k > 0u; k >>= 1u) {
    if (lid < k) {
      rsum[lid] += rsum[lid + k];
      rmax[lid] = max(rmax[lid], rmax[lid + k]);
      rcnt[lid] += rcnt[lid + k];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let rows = f32(min(p.t, qb * 64u + 64u) - qb * 64u);
    let cols = f32(min(p.t, kb * 64u + 64u) - kb * 64u);
    let cnt = rows * cols;
    let sum = rsum[0];
    let at = p.base + c * p.c_stride + blk * 3u;
    stats[at] += sum;
    stats[at + 1u] += select(0.0, 1.0, rcnt[0] >= 0.9 * cnt);
    stats[at + 2u] += select(1.0, rmax[0] / (sum / cnt), sum > 0.0);
  }
}
