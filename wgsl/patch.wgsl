// Layout kernels, one thread per output element (writes are coalesced):
//   im2col     — x [B, C, H, W] → [B·h·w, C·p·p], row (b, hi, wi) in row-major (h, w) order,
//                column (c, ph, pw) as the flattened conv weight [out, C, p, p], so that
//                im2col(x)·Wᵀ is PatchEmbed's stride-p conv (trailing H, W % p dropped);
//   unpatchify — [B, h·w, p·p·C] → [B, C, h·p, w·p], PixArt's reshape (B, h, w, p, p, C) +
//                einsum "nhwpqc->nchpwq";
//   copy2d     — dst[d_off + r·d_stride + j] = src[s_off + r·s_stride + j], r < rows,
//                j < cols: concat and slice along any axis.
override WG: u32 = 256u;
override OP: u32 = 0u; // 0 im2col, 1 unpatchify, 2 copy2d

struct Params {
  n: u32, ch: u32, p: u32, gh: u32,      // outputs, channels, patch, grid h
  gw: u32, hh: u32, ww: u32, cols: u32,  // grid w, image H and W; copy2d: cols
  s_off: u32, s_stride: u32, d_off: u32, d_stride: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<DT>;
@group(0) @binding(2) var<storage, read_write> dst: array<DT>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  let i = gid.x + gid.y * ng.x * WG;
  if (i >= p.n) { return; }
  switch OP {
    case 0u: {
      let pp = p.p * p.p;
      let k = p.ch * pp;
      let row = i / k;
      let col = i % k;
      let b = row / (p.gh * p.gw);
      let hw = row % (p.gh * p.gw);
      let c = col / pp;
      let y = (hw / p.gw) * p.p + (col % pp) / p.p;
      let x = (hw % p.gw) * p.p + col % p.p;
      dst[i] = src[((b * p.ch + c) * p.hh + y) * p.ww + x];
    }
    case 1u: {
      let hp = p.gh * p.p;
      let wp = p.gw * p.p;
      let x = i % wp;
      let y = (i / wp) % hp;
      let c = (i / (wp * hp)) % p.ch;
      let b = i / (wp * hp * p.ch);
      let tok = b * p.gh * p.gw + (y / p.p) * p.gw + x / p.p;
      dst[i] = src[(tok * p.p * p.p + (y % p.p) * p.p + x % p.p) * p.ch + c];
    }
    default: {
      let r = i / p.cols;
      let j = i % p.cols;
      dst[p.d_off + r * p.d_stride + j] = src[p.s_off + r * p.s_stride + j];
    }
  }
}
