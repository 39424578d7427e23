// Converts between storage types: SRC → DST element by element (f32 ↔ f16).
override WG: u32 = 256u;

struct Params { n: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<SRC>;
@group(0) @binding(2) var<storage, read_write> out: array<DST>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  let i = gid.x + gid.y * ng.x * WG;
  if (i >= p.n) { return; }
  out[i] = DST(x[i]);
}
