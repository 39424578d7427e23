// Numerically stable softmax over rows of N, one workgroup per row: each thread keeps a
// running (max, sum of exp) over its strided elements, the pairs are merged with a tree
// of log2(WG) steps in workgroup memory, then y = exp(x − max) / sum.
override WG: u32 = 64u; // threads per workgroup, a power of two

struct Params { rows: u32, n: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<DT>;
@group(0) @binding(2) var<storage, read_write> out: array<DT>;

var<workgroup> red_m: array<f32, WG>;
var<workgroup> red_s: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) ng: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let row = wid.x + wid.y * ng.x;
  if (row >= p.rows) { return; } // uniform per workgroup
  let base = row * p.n;
  var m = -3.0e38;
  var s = 0.0;
  for (var i = lid; i < p.n; i += WG) {
    let v = f32(x[base + i]);
    let mn = max(m, v);
    s = s * exp(m - mn) + exp(v - mn);
    m = mn;
  }
  red_m[lid] = m;
  red_s[lid] = s;
  for (var k = WG / 2u; k > 0u; k >>= 1u) {
    workgroupBarrier();
    if (lid < k) {
      let ma = red_m[lid];
      let mb = red_m[lid + k];
      let mn = max(ma, mb);
      red_s[lid] = red_s[lid] * exp(ma - mn) + red_s[lid + k] * exp(mb - mn);
      red_m[lid] = mn;
    }
  }
  workgroupBarrier();
  let mx = red_m[0];
  let inv = 1.0 / red_s[0];
  for (var i = lid; i < p.n; i += WG) {
    out[base + i] = DT(exp(f32(x[base + i]) - mx) * inv);
  }
}
