// Per-group channel centres of activations x [G·R, K] (f32/f16): centre[g, c] over the R rows
// of group g (one sample's tokens), as the mean (MODE 0) or the midrange (min + max) / 2
// (MODE 1). A workgroup covers CH channels of one group; its RL row lanes split the rows,
// then merge in workgroup memory (runtime/ops/act_center.ts).
override CH: u32 = 32u;  // channels per workgroup
override RL: u32 = 8u;   // row lanes (a power of two)
override MODE: u32 = 0u; // 0 mean, 1 midrange

struct Params { R: u32, K: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<DT>;
@group(0) @binding(2) var<storage, read_write> centre: array<DT>;

var<workgroup> s_a: array<f32, CH * RL>; // sum, or min
var<workgroup> s_b: array<f32, CH * RL>; // max (midrange)

@compute @workgroup_size(CH, RL)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let c = wid.x * CH + lid.x;
  let g = wid.y;
  let valid = c < p.K;
  var a = select(0.0, 3.0e38, MODE == 1u);
  var b = -3.0e38;
  if (valid) {
    let base = g * p.R * p.K + c;
    for (var r = lid.y; r < p.R; r += RL) {
      let v = f32(x[base + r * p.K]);
      if (MODE == 1u) {
        a = min(a, v);
        b = max(b, v);
      } else {
        a += v;
      }
    }
  }
  let i = lid.y * CH + lid.x;
  s_a[i] = a;
  s_b[i] = b;
  workgroupBarrier();
  for (var w = RL / 2u; w > 0u; w /= 2u) {
    if (lid.y < w) {
      let j = i + w * CH;
      if (MODE == 1u) {
        s_a[i] = min(s_a[i], s_a[j]);
        s_b[i] = max(s_b[i], s_b[j]);
      } else {
        s_a[i] = s_a[i] + s_a[j];
      }
    }
    workgroupBarrier();
  }
  if (lid.y == 0u && valid) {
    var v: f32;
    if (MODE == 1u) {
      v = 0.5 * s_a[lid.x] + 0.5 * s_b[lid.x];
    } else {
      v = s_a[lid.x] / f32(p.R);
    }
    centre[g * p.K + c] = DT(v);
  }
}
