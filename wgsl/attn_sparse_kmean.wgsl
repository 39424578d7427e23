// Mean of K over tokens per (batch, head, channel), for the PARO quantizer: subtracting
// it from every key changes no softmax row (it shifts a row's scores by a constant) and
// centres K before its per-block INT8/INT4 scales are taken.
//
// One workgroup per (head, batch). WG threads split into ⌊WG / hd⌋ token slices × hd
// channels; each thread sums its slice, then the first hd threads add the slices up.
override WG: u32 = 256u;

struct Params {
  t: u32, hd: u32, heads: u32, k_off: u32,
  k_row: u32, k_batch: u32, pad0: u32, pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> k: array<DT>;
@group(0) @binding(2) var<storage, read_write> mean: array<f32>;

var<workgroup> part: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let h = wid.x;
  let b = wid.y;
  let slices = WG / p.hd;
  let d = lid % p.hd;
  let sl = lid / p.hd;
  var s = 0.0;
  if (sl < slices) {
    let base = b * p.k_batch + p.k_off + h * p.hd + d;
    for (var t = sl; t < p.t; t += slices) { s += f32(k[base + t * p.k_row]); }
  }
  part[lid] = s;
  workgroupBarrier();
  if (lid < p.hd) {
    var tot = 0.0;
    for (var i = 0u; i < slices; i++) { tot += part[i * p.hd + lid]; }
    mean[(b * p.heads + h) * p.hd + lid] = tot / f32(p.t);
  }
}
