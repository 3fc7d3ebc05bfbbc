/** An ibv_pd, with the count of MRs and QPs that keep it alive (ib_dealloc_pd_user()'s usecnt). */
export class ProtectionDomain {
  users = 0;

  constructor(readonly handle: number) {}
}
