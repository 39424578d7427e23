// RMSNorm y = x·rsqrt(mean(x²) + eps) [·w] over groups of G columns, within columns
// [col, col + width) of rows of `x_row` elements: FLUX's per-head q/k norm (G = head
// dim) reads q and k inside a fused qkv row. One workgroup per group; WG threads stride
// over it and sum their squares with a tree of log2(WG) steps in workgroup memory.
// x and out are both read_write so that out may be x (in place); out rows hold
// `out_row` elements starting at column `out_col`.
override WG: u32 = 64u; // threads per workgroup, a power of two

struct Params {
  groups: u32, g: u32, groups_per_row: u32, flags: u32,  // flags: 1 weight
  x_row: u32, col: u32, out_row: u32, out_col: u32,
  eps: f32, pad0: u32, pad1: u32, pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<DT>;
@group(0) @binding(2) var<storage, read> w: array<DT>;
@group(0) @binding(3) var<storage, read_write> out: array<DT>;

var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) ng: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let gi = wid.x + wid.y * ng.x;
  if (gi >= p.groups) { return; } // uniform per workgroup
  let row = gi / p.groups_per_row;
  let gc = (gi % p.groups_per_row) * p.g;
  let xb = row * p.x_row + p.col + gc;
  let ob = row * p.out_row + p.out_col + gc;
  var ss = 0.0;
  for (var i = lid; i < p.g; i += WG) {
    let v = f32(x[xb + i]);
    ss += v * v;
  }
  red[lid] = ss;
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (lid < s) { red[lid] += red[lid + s]; }
  }
  workgroupBarrier();
  let r = inverseSqrt(red[0] / f32(p.g) + p.eps);
  for (var i = lid; i < p.g; i += WG) {
    var y = f32(x[xb + i]) * r;
    if ((p.flags & 1u) != 0u) { y *= f32(w[i]); }
    out[ob + i] = DT(y);
  }
}
