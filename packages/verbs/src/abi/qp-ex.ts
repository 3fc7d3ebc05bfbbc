/** enum ibv_qp_create_send_ops_flags (verbs.h): the ibv_wr_* calls a QP made with ibv_create_qp_ex() may use. */
export const IBV_QP_EX_WITH_RDMA_WRITE = 1 << 0;
export const IBV_QP_EX_WITH_RDMA_WRITE_WITH_IMM = 1 << 1;
export const IBV_QP_EX_WITH_SEND = 1 << 2;
export const IBV_QP_EX_WITH_SEND_WITH_IMM = 1 << 3;
export const IBV_QP_EX_WITH_RDMA_READ = 1 << 4;
export const IBV_QP_EX_WITH_ATOMIC_CMP_AND_SWP = 1 << 5;
export const IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD = 1 << 6;
export const IBV_QP_EX_WITH_LOCAL_INV = 1 << 7;
export const IBV_QP_EX_WITH_BIND_MW = 1 << 8;
export const IBV_QP_EX_WITH_SEND_WITH_INV = 1 << 9;
export const IBV_QP_EX_WITH_TSO = 1 << 10;
export const IBV_QP_EX_WITH_FLUSH = 1 << 11;
export const IBV_QP_EX_WITH_ATOMIC_WRITE = 1 << 12;

/** The send ops this device's RC QPs run: the seven RC opcodes. Any other asked for is EOPNOTSUPP at creation. */
export const QP_EX_SUPPORTED_SEND_OPS =
  IBV_QP_EX_WITH_RDMA_WRITE |
  IBV_QP_EX_WITH_RDMA_WRITE_WITH_IMM |
  IBV_QP_EX_WITH_SEND |
  IBV_QP_EX_WITH_SEND_WITH_IMM |
  IBV_QP_EX_WITH_RDMA_READ |
  IBV_QP_EX_WITH_ATOMIC_CMP_AND_SWP |
  IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD;
