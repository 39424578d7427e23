// Grouped quantization of one rotated row, shared by the Hadamard kernels (rotq_hadamard.wgsl,
// rotq_hadamard_reg.wgsl; the host appends it after the kernel, whose overrides it reads):
// groups first, first + step, … of GROUP values, a thread a group, read through the kernel's
// rotated_at(base, k) and rotated4_at(base, k) (column k of the row at base). Scales
// [M, K/GROUP], with ASYM the zero points after them (quant_grid.wgsl's arithmetic, as
// act_quant.wgsl's quant_groups); codes four per word.
fn quant_groups(row: u32, base: u32, first: u32, step: u32) {
  let ng = p.K / GROUP;
  let qmax = f32((1u << (BITS - 1u)) - 1u);
  for (var g = first; g < ng; g += step) {
    let k0 = g * GROUP;
    var lo = rotated_at(base, k0);
    var hi = lo;
    var amax = 0.0;
    for (var k = k0; k < k0 + GROUP; k++) {
      let v = rotated_at(base, k);
      lo = min(lo, v);
      hi = max(hi, v);
      amax = max(amax, abs(v));
    }
    var d = vec3<f32>(sym_grid(amax, qmax), 0.0);
    if (ASYM) {
      d = asym_grid(lo, hi, qmax);
      scales[p.M * ng + row * ng + g] = d.z;
    }
    scales[row * ng + g] = d.x;
    for (var w = k0 / 4u; w < (k0 + GROUP) / 4u; w++) {
      let v = rotated4_at(base, 4u * w);
      var word = pack_sym(v, d.y, qmax);
      if (ASYM) { word = pack_asym(v, lo, d.y, qmax); }
      codes[row * p.words + w] = word;
    }
  }
}
