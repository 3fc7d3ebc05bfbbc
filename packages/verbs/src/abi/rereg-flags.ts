/** enum ibv_rereg_mr_flags (verbs.h). */
export const IBV_REREG_MR_CHANGE_TRANSLATION = 1 << 0;
export const IBV_REREG_MR_CHANGE_PD = 1 << 1;
export const IBV_REREG_MR_CHANGE_ACCESS = 1 << 2;
/** The flags ibv_rereg_mr() takes here (IBV_REREG_MR_KEEP_VALID is not one). */
export const IBV_REREG_MR_FLAGS_SUPPORTED = IBV_REREG_MR_CHANGE_TRANSLATION | IBV_REREG_MR_CHANGE_PD | IBV_REREG_MR_CHANGE_ACCESS;
