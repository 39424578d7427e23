// Streaming per-channel statistics of activations x [M, K] (f32/f16), merged into a
// running stats buffer [5, K] f32: absmax, min, max, Σx² (Kahan sum) and its Kahan
// compensation. A workgroup covers CH channels; its RL row lanes split the rows, then
// merge in workgroup memory; lane 0 folds the result into the buffer (each channel has
// one owner, so no atomics).
override CH: u32 = 32u;  // channels per workgroup
override RL: u32 = 8u;   // row lanes (a power of two)

struct Params { M: u32, K: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<DT>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;

var<workgroup> s_amax: array<f32, CH * RL>;
var<workgroup> s_min: array<f32, CH * RL>;
var<workgroup> s_max: array<f32, CH * RL>;
var<workgroup> s_sq: array<f32, CH * RL>;

@compute @workgroup_size(CH, RL)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let c = wid.x * CH + lid.x;
  let valid = c < p.K;
  var amax = 0.0;
  var mn = 3.0e38;
  var mx = -3.0e38;
  var sq = 0.0;
  if (valid) {
    for (var r = lid.y; r < p.M; r += RL) {
      let v = f32(x[r * p.K + c]);
      amax = max(amax, abs(v));
      mn = min(mn, v);
      mx = max(mx, v);
      sq += v * v;
    }
  }
  let i = lid.y * CH + lid.x;
  s_amax[i] = amax;
  s_min[i] = mn;
  s_max[i] = mx;
  s_sq[i] = sq;
  workgroupBarrier();
  for (var w = RL / 2u; w > 0u; w /= 2u) {
    if (lid.y < w) {
      let j = i + w * CH;
      s_amax[i] = max(s_amax[i], s_amax[j]);
      s_min[i] = min(s_min[i], s_min[j]);
      s_max[i] = max(s_max[i], s_max[j]);
      s_sq[i] = s_sq[i] + s_sq[j];
    }
    workgroupBarrier();
  }
  if (lid.y == 0u && valid) {
    let K = p.K;
    stats[c] = max(stats[c], s_amax[lid.x]);
    stats[K + c] = min(stats[K + c], s_min[lid.x]);
    stats[2u * K + c] = max(stats[2u * K + c], s_max[lid.x]);
    // Kahan: sum += value, compensation carries the lost low bits.
    let yk = s_sq[lid.x] - stats[4u * K + c];
    let t = stats[3u * K + c] + yk;
    stats[4u * K + c] = (t - stats[3u * K + c]) - yk;
    stats[3u * K + c] = t;
  }
}
