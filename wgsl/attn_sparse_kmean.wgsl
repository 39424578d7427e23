// Mean of K over tokens per (batch, head, channel), for the PARO quantizer: subtracting
// it from every key changes no softmax row (it shifts a row's scores by a constant) and
// centres K before its per-block INT8/INT4 scales are taken.
//
// Two passes, no atomics, a fixed summation order (the same for every launch):
// - `partial`: one workgroup per (chunk of `ch` tokens, head, batch). WG threads split into
//   ⌊WG / hd⌋ token slices × hd channels (consecutive threads read consecutive channels of
//   one token row); each thread sums tokens sl, sl + slices, … of the chunk, then the first
//   hd threads add the slices in slice order → part [B, H, nch, hd].
// - `total`: one workgroup per (head, batch), the same split over the nch chunk sums, then
//   ÷ T → mean [B, H, hd].
override WG: u32 = 256u;

struct Params {
  t: u32, hd: u32, heads: u32, k_off: u32,
  k_row: u32, k_batch: u32, ch: u32, nch: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> k: array<DT>;
@group(0) @binding(2) var<storage, read_write> part: array<f32>;
@group(0) @binding(3) var<storage, read_write> mean: array<f32>;

var<workgroup> red: array<f32, WG>;

// Adds the slices' sums of channel lid (lid < hd) in slice order.
fn slices_sum(lid: u32) -> f32 {
  let slices = WG / p.hd;
  var tot = 0.0;
  for (var i = 0u; i < slices; i++) { tot += red[i * p.hd + lid]; }
  return tot;
}

@compute @workgroup_size(WG)
fn partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = wid.x;
  let h = wid.y;
  let b = wid.z;
  let slices = WG / p.hd;
  let d = lid % p.hd;
  let sl = lid / p.hd;
  var s = 0.0;
  if (sl < slices) {
    let base = b * p.k_batch + p.k_off + h * p.hd + d;
    let t1 = min(c * p.ch + p.ch, p.t);
    for (var t = c * p.ch + sl; t < t1; t += slices) { s += f32(k[base + t * p.k_row]); }
  }
  red[lid] = s;
  workgroupBarrier();
  if (lid < p.hd) {
    part[((b * p.heads + h) * p.nch + c) * p.hd + lid] = slices_sum(lid);
  }
}

@compute @workgroup_size(WG)
fn total(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let bh = wid.y * p.heads + wid.x;
  let slices = WG / p.hd;
  let d = lid % p.hd;
  let sl = lid / p.hd;
  var s = 0.0;
  if (sl < slices) {
    for (var c = sl; c < p.nch; c += slices) { s += part[(bh * p.nch + c) * p.hd + d]; }
  }
  red[lid] = s;
  workgroupBarrier();
  if (lid < p.hd) { mean[bh * p.hd + lid] = slices_sum(lid) / f32(p.t); }
}
