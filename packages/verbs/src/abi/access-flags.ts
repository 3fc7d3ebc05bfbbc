/** enum ibv_access_flags (verbs.h). */
export const IBV_ACCESS_LOCAL_WRITE = 1;
export const IBV_ACCESS_REMOTE_WRITE = 1 << 1;
export const IBV_ACCESS_REMOTE_READ = 1 << 2;
export const IBV_ACCESS_REMOTE_ATOMIC = 1 << 3;
export const IBV_ACCESS_MW_BIND = 1 << 4;
export const IBV_ACCESS_ZERO_BASED = 1 << 5;
export const IBV_ACCESS_ON_DEMAND = 1 << 6;
export const IBV_ACCESS_HUGETLB = 1 << 7;
export const IBV_ACCESS_FLUSH_GLOBAL = 1 << 8;
export const IBV_ACCESS_FLUSH_PERSISTENT = 1 << 9;
/** The first of the optional flags (IB_UVERBS_ACCESS_OPTIONAL_FIRST): a device that does not know one ignores it. */
export const IBV_ACCESS_RELAXED_ORDERING = 1 << 20;
/** IB_UVERBS_ACCESS_OPTIONAL_RANGE: bits 20 to 28. */
export const IBV_ACCESS_OPTIONAL_RANGE = ((1 << 29) - 1) & ~((1 << 20) - 1);
/** IB_ACCESS_SUPPORTED (include/rdma/ib_verbs.h): every flag up to FLUSH_PERSISTENT, and the optional range. */
export const IBV_ACCESS_SUPPORTED = ((IBV_ACCESS_FLUSH_PERSISTENT << 1) - 1) | IBV_ACCESS_OPTIONAL_RANGE;

/** The flags a QP's qp_access_flags may carry (the remote ones; ib_modify_qp checks nothing else). */
export const QP_ACCESS_FLAGS_MASK = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC;
