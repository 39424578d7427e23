// Per-token dynamic symmetric activation quantizer (METHODS.md §1): for each row x_t of
// X [M, K], Δ_t = max|x_t| / qmax (qmax = 2^(b−1) − 1) and q = clamp(round(x·(1/Δ_t)),
// −2^(b−1), qmax), round half to even; a zero row gets Δ = 0 and q = 0. Codes go out four
// int8 to a u32 word (pack4xI8's layout), rows of K4 = ⌈K/4⌉ words, the tail zero-padded.
//
// Entry points (x is bound twice at binding 1, each entry uses one of the two):
// - quant_rows4: one invocation per row, vec4 loads (K % 4 == 0): for CPU adapters, where
//   every load costs the same whatever its width and barriers are dear;
// - quant_rows1: the same with scalar loads, any K;
// - quant_wg: a workgroup per row (max reduced in workgroup memory), for GPUs;
// - quant_groups: one invocation per group of GROUP channels (GROUP % 4 == 0, dividing K):
//   each group its own Δ (scales [M, K/GROUP]), any adapter. With ASYM the group's 2^b levels
//   run from its min lo to its max: Δ = (max − lo)/(2^b − 1), code = clamp(round((x − lo)/Δ),
//   0, 2^b − 1) − 2^(b−1) (an int8), x̂ = Δ·code + z with z = lo + 2^(b−1)·Δ; scales holds
//   the Δs [M·K/GROUP] then the zs [M·K/GROUP];
// - error_acc: one workgroup adds Σ(x − Δ·q)² and Σx² over all rows into acc[2·slot],
//   acc[2·slot + 1] (quantize --report; dispatches run in order, so there is no race); per
//   group of GROUP channels when GROUP > 0.
override WG: u32 = 64u;
override GROUP: u32 = 0u;  // channels a scale; 0: the whole row
override ASYM: bool = false;  // quant_groups, error_acc: min-to-max levels (GROUP > 0)

struct Params { M: u32, K: u32, K4: u32, qmax: u32, slot: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x4: array<DT4>;
@group(0) @binding(1) var<storage, read> x1: array<DT>;
@group(0) @binding(2) var<storage, read_write> q: array<u32>;
@group(0) @binding(3) var<storage, read_write> scales: array<f32>;

var<workgroup> red: array<f32, 256>;
var<workgroup> red2: array<f32, 256>;

fn qmax() -> f32 { return f32(p.qmax); }

fn row_of(gid: vec3<u32>, ng: vec3<u32>) -> u32 { return gid.x + gid.y * ng.x * WG; }

fn ld1(row: u32, k: u32) -> f32 {
  return select(0.0, f32(x1[row * p.K + min(k, p.K - 1u)]), k < p.K);
}

@compute @workgroup_size(WG)
fn quant_rows4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  let row = row_of(gid, ng);
  if (row >= p.M) { return; }
  let base = row * p.K4;
  var m = vec4<f32>(0.0);
  for (var j = 0u; j < p.K4; j++) { m = max(m, abs(vec4<f32>(x4[base + j]))); }
  let amax = max(max(m.x, m.y), max(m.z, m.w));
  let d = sym_grid(amax, qmax());
  scales[row] = d.x;
  for (var j = 0u; j < p.K4; j++) { q[base + j] = pack_sym(vec4<f32>(x4[base + j]), d.y, qmax()); }
}

@compute @workgroup_size(WG)
fn quant_rows1(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  let row = row_of(gid, ng);
  if (row >= p.M) { return; }
  var amax = 0.0;
  for (var k = 0u; k < p.K; k++) { amax = max(amax, abs(f32(x1[row * p.K + k]))); }
  let d = sym_grid(amax, qmax());
  scales[row] = d.x;
  for (var j = 0u; j < p.K4; j++) {
    let k = 4u * j;
    let v = vec4<f32>(ld1(row, k), ld1(row, k + 1u), ld1(row, k + 2u), ld1(row, k + 3u));
    q[row * p.K4 + j] = pack_sym(v, d.y, qmax());
  }
}

@compute @workgroup_size(WG)
fn quant_wg(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let row = wg.x + wg.y * ng.x;
  if (row >= p.M) { return; } // uniform per workgroup: the barriers below stay uniform
  var m = 0.0;
  for (var k = lid; k < p.K; k += WG) { m = max(m, abs(f32(x1[row * p.K + k]))); }
  red[lid] = m;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
    workgroupBarrier();
  }
  let amax = red[0];
  let d = sym_grid(amax, qmax());
  if (lid == 0u) { scales[row] = d.x; }
  for (var j = lid; j < p.K4; j += WG) {
    let k = 4u * j;
    let v = vec4<f32>(ld1(row, k), ld1(row, k + 1u), ld1(row, k + 2u), ld1(row, k + 3u));
    q[row * p.K4 + j] = pack_sym(v, d.y, qmax());
  }
}

@compute @workgroup_size(WG)
fn quant_groups(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  let g = row_of(gid, ng);
  if (g >= p.M * (p.K / GROUP)) { return; }
  let base = g * (GROUP / 4u);  // rows are whole groups: group g starts at element g·GROUP
  if (ASYM) {
    var lo4 = vec4<f32>(x4[base]);
    var hi4 = lo4;
    for (var j = 1u; j < GROUP / 4u; j++) {
      lo4 = min(lo4, vec4<f32>(x4[base + j]));
      hi4 = max(hi4, vec4<f32>(x4[base + j]));
    }
    let lo = min(min(lo4.x, lo4.y), min(lo4.z, lo4.w));
    let a = asym_grid(lo, max(max(hi4.x, hi4.y), max(hi4.z, hi4.w)), qmax());
    scales[g] = a.x;
    scales[p.M * (p.K / GROUP) + g] = a.z;
    for (var j = 0u; j < GROUP / 4u; j++) {
      q[base + j] = pack_asym(vec4<f32>(x4[base + j]), lo, a.y, qmax());
    }
    return;
  }
  var m = vec4<f32>(0.0);
  for (var j = 0u; j < GROUP / 4u; j++) { m = max(m, abs(vec4<f32>(x4[base + j]))); }
  let amax = max(max(m.x, m.y), max(m.z, m.w));
  let d = sym_grid(amax, qmax());
  scales[g] = d.x;
  for (var j = 0u; j < GROUP / 4u; j++) {
    q[base + j] = pack_sym(vec4<f32>(x4[base + j]), d.y, qmax());
  }
}

@compute @workgroup_size(WG)
fn error_acc(@builtin(local_invocation_index) lid: u32) {
  var e = 0.0;
  var s = 0.0;
  let hi = f32(p.qmax);
  let G = select(p.K, GROUP, GROUP > 0u);
  for (var grp = lid; grp < p.M * (p.K / G); grp += WG) {
    let k0 = grp * G;
    var amax = 0.0;
    var lo = f32(x1[k0]);
    var top = lo;
    for (var k = k0; k < k0 + G; k++) {
      amax = max(amax, abs(f32(x1[k])));
      lo = min(lo, f32(x1[k]));
      top = max(top, f32(x1[k]));
    }
    let sg = sym_grid(amax, hi);
    let a = asym_grid(lo, top, hi);
    for (var k = k0; k < k0 + G; k++) {
      let v = f32(x1[k]);
      var d = v - sg.x * clamp(round(v * sg.y), -hi - 1.0, hi);
      if (ASYM) {
        d = v - (a.x * (clamp(round((v - lo) * a.y), 0.0, 2.0 * hi + 1.0) - hi - 1.0) + a.z);
      }
      e += d * d;
      s += v * v;
    }
  }
  red[lid] = e;
  red2[lid] = s;
  workgroupBarrier();
  for (var h = WG / 2u; h > 0u; h >>= 1u) {
    if (lid < h) {
      red[lid] += red[lid + h];
      red2[lid] += red2[lid + h];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    scales[2u * p.slot] += red[0];
    scales[2u * p.slot + 1u] += red2[0];
  }
}
