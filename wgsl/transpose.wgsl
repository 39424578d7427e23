// [B, R, C] → [B, C, R]: channels first ↔ channels last (R = H·W), one output element a thread.
override WG: u32 = 256u;

struct Params { r: u32, c: u32, n: u32, pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<DT>;
@group(0) @binding(2) var<storage, read_write> out: array<DT>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  let i = gid.x + gid.y * ng.x * WG;
  if (i >= p.n) { return; }
  let per = p.r * p.c;
  let b = i / per;
  let rest = i % per;
  out[i] = x[b * per + (rest % p.r) * p.c + rest / p.r];
}
