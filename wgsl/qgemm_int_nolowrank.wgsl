// qgemm_int.wgsl without a low-rank branch (LR4 stays 0): qgemm_int_lowrank.wgsl's names, no bindings.
override LR4: u32 = 0u;

fn lr_stage(m0: u32, n0: u32, tid: u32, nt: u32, r0: u32) {}
