// FLUX's _unpack_latents, the inverse of the 2×2 packing (= im2col with patch p):
// x [B·h·w, C·p·p] with column (c, dy, dx) → out [B, C, h·p, w·p]. One thread per output
// element (coalesced writes); the grid may be 2-D: index = x + y·(groups_x·WG).
override WG: u32 = 256u;

struct Params { n: u32, ch: u32, p: u32, gh: u32, gw: u32, pad0: u32, pad1: u32, pad2: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<DT>;
@group(0) @binding(2) var<storage, read_write> dst: array<DT>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  let i = gid.x + gid.y * ng.x * WG;
  if (i >= p.n) { return; }
  let wp = p.gw * p.p;
  let hp = p.gh * p.p;
  let x = i % wp;
  let y = (i / wp) % hp;
  let c = (i / (wp * hp)) % p.ch;
  let b = i / (wp * hp * p.ch);
  let tok = (b * p.gh + y / p.p) * p.gw + x / p.p;
  dst[i] = src[tok * p.ch * p.p * p.p + (c * p.p + y % p.p) * p.p + x % p.p];
}
