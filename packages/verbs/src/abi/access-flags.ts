/** enum ibv_access_flags (verbs.h). */
export const IBV_ACCESS_LOCAL_WRITE = 1;
export const IBV_ACCESS_REMOTE_WRITE = 1 << 1;
export const IBV_ACCESS_REMOTE_READ = 1 << 2;
export const IBV_ACCESS_REMOTE_ATOMIC = 1 << 3;
export const IBV_ACCESS_MW_BIND = 1 << 4;
export const IBV_ACCESS_ZERO_BASED = 1 << 5;
export const IBV_ACCESS_ON_DEMAND = 1 << 6;
export const IBV_ACCESS_RELAXED_ORDERING = 1 << 20;

/** The flags a QP's qp_access_flags may carry (the remote ones; ib_modify_qp checks nothing else). */
export const QP_ACCESS_FLAGS_MASK = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC;
