// Per-group channel centres of activations x [G·R, K] (f32/f16): centre[g, c] over the R rows
// of group g (one sample's tokens), as the mean (MODE 0) or the midrange (min + max) / 2
// (MODE 1). Two passes (runtime/ops/act_center.ts):
//   partial: workgroup (x: CH channels, y: a group's chunk of CHUNK rows); its RL row lanes
//     split the chunk, merge in workgroup memory, and write the chunk's sum (or min and max)
//     to part [G, C, 2, K] — many chunks keep the GPU busy when G·K is small;
//   finish: a thread a (group, channel) folds the group's C chunks into the centre.
override CH: u32 = 32u;      // channels per workgroup
override RL: u32 = 8u;       // row lanes (a power of two)
override CHUNK: u32 = 256u;  // rows per chunk
override MODE: u32 = 0u;     // 0 mean, 1 midrange
// 1: x is a CFG pair [u; c] of G/2 groups each, centred as [u; c − u] (runtime/ops/cfg_delta.ts)
override PAIR: u32 = 0u;

struct Params { R: u32, K: u32, C: u32, GK: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<DT>;
@group(0) @binding(2) var<storage, read_write> part: array<f32>;
@group(0) @binding(3) var<storage, read_write> centre: array<DT>;

var<workgroup> s_a: array<f32, CH * RL>; // sum, or min
var<workgroup> s_b: array<f32, CH * RL>; // max (midrange)

@compute @workgroup_size(CH, RL)
fn partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let c = wid.x * CH + lid.x;
  let g = wid.y / p.C;
  let chunk = wid.y % p.C;
  let valid = c < p.K;
  var a = select(0.0, 3.0e38, MODE == 1u);
  var b = -3.0e38;
  // A CFG pair's second half subtracts its twin, `back` elements earlier (group g − G/2).
  let half = p.GK / p.K / 2u;
  let paired = PAIR == 1u && g >= half;
  let back = half * p.R * p.K;
  if (valid) {
    let r1 = min(p.R, (chunk + 1u) * CHUNK);
    for (var r = chunk * CHUNK + lid.y; r < r1; r += RL) {
      let at = (g * p.R + r) * p.K + c;
      var v = f32(x[at]);
      if (paired) { v -= f32(x[at - back]); }
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
    let o = (wid.y * 2u) * p.K + c; // part[g, chunk, 0|1, c]
    part[o] = s_a[lid.x];
    part[o + p.K] = s_b[lid.x];
  }
}

@compute @workgroup_size(64)
fn finish(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i >= p.GK) { return; }
  let g = i / p.K;
  let c = i % p.K;
  var a = select(0.0, 3.0e38, MODE == 1u);
  var b = -3.0e38;
  for (var k = 0u; k < p.C; k++) {
    let o = ((g * p.C + k) * 2u) * p.K + c;
    if (MODE == 1u) {
      a = min(a, part[o]);
      b = max(b, part[o + p.K]);
    } else {
      a += part[o];
    }
  }
  var v: f32;
  if (MODE == 1u) {
    v = 0.5 * a + 0.5 * b;
  } else {
    v = a / f32(p.R);
  }
  centre[i] = DT(v);
}
