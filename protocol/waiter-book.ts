/**
 * A Peer's requests awaiting their answers, by reqId and by the peer they
 * went to. resend(peer) runs at every device's "online" state (a service
 * resends what that device may have missed), and reading every waiter to
 * find that device's was quadratic in a restart storm: 10,000 devices
 * coming online beside 10,000 key deliveries waiting for their
 * acknowledgements were 9.2% of `kagi up` (bench:storm's profile), with
 * the copies' GC beside it.
 */
export class WaiterBook<W extends { peer: string }> {
  private readonly byId = new Map<number, W>();
  private readonly byPeer = new Map<string, Set<number>>();

  get size(): number {
    return this.byId.size;
  }

  get(reqId: number): W | undefined {
    return this.byId.get(reqId);
  }

  has(reqId: number): boolean {
    return this.byId.has(reqId);
  }

  set(reqId: number, w: W): void {
    this.delete(reqId);
    this.byId.set(reqId, w);
    let ids = this.byPeer.get(w.peer);
    if (!ids) this.byPeer.set(w.peer, (ids = new Set()));
    ids.add(reqId);
  }

  delete(reqId: number): boolean {
    const w = this.byId.get(reqId);
    if (!w) return false;
    this.byId.delete(reqId);
    const ids = this.byPeer.get(w.peer);
    ids?.delete(reqId);
    if (ids?.size === 0) this.byPeer.delete(w.peer);
    return true;
  }

  /** Every reqId waiting (a copy: callers delete as they go). */
  ids(): number[] {
    return [...this.byId.keys()];
  }

  /** The waiters for `peer`, or every waiter without it. */
  waiting(peer?: string): W[] {
    if (peer === undefined) return [...this.byId.values()];
    return [...(this.byPeer.get(peer) ?? [])].map((id) => this.byId.get(id)!);
  }
}
