// im2col of a 3×3, stride-1, zero-padded convolution on channels-last images [B, H, W, C]:
// for output rows row0 … row0 + rows − 1 of sample b,
//   out[(y − row0)·Wo + x, (ky·3 + kx)·C + c] = in[b, (y + ky − 1) >> UP, (x + kx − 1) >> UP, c]
// (0 outside the image), where UP = 1 reads the input upsampled 2× by nearest neighbour
// (diffusers' Upsample2D before its conv) without writing the upsampled image.
override WG: u32 = 256u;

struct Params { b: u32, row0: u32, h: u32, w: u32, c: u32, up: u32, n: u32, pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<DT>;
@group(0) @binding(2) var<storage, read_write> out: array<DT>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  let i = gid.x + gid.y * ng.x * WG;
  if (i >= p.n) { return; }
  let k9 = 9u * p.c;
  let pix = i / k9;
  let k = i % k9;
  let tap = k / p.c;
  let ch = k % p.c;
  let ho = p.h << p.up;
  let wo = p.w << p.up;
  let yy = i32(p.row0 + pix / wo) + i32(tap / 3u) - 1;
  let xx = i32(pix % wo) + i32(tap % 3u) - 1;
  var v = DT(0.0);
  if (yy >= 0 && yy < i32(ho) && xx >= 0 && xx < i32(wo)) {
    let sy = u32(yy) >> p.up;
    let sx = u32(xx) >> p.up;
    v = x[((p.b * p.h + sy) * p.w + sx) * p.c + ch];
  }
  out[i] = v;
}
