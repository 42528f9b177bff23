import { matches } from '../acl/topic.ts';

/**
 * Overlapping subscriptions (MQTT 3.1.1 §3.3.5, MQTT 5 §3.3.4): when several of one session's
 * filters match a message, the bridge sends it **once**, at the highest QoS granted among them.
 * The bus hands the message to every matching filter separately, so each filter asks here whether
 * it is the one that delivers: the smallest matching filter (by string order) does, the others
 * stay silent. Pure and deterministic: no message ids or per-message state are needed.
 *
 * Returns the QoS to deliver at when `pattern` delivers `topic` for a session holding `subs`
 * (filter → granted QoS), or undefined when another of its filters does.
 */
export function overlapDelivery(subs: ReadonlyMap<string, 0 | 1>, pattern: string, topic: string): 0 | 1 | undefined {
  let qos: 0 | 1 = subs.get(pattern) ?? 0;
  for (const [p, q] of subs) {
    if (p === pattern || !matches(p, topic)) continue;
    if (p < pattern) return undefined;
    if (q > qos) qos = q;
  }
  return qos;
}
