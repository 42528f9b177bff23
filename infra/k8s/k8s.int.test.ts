import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import { settings } from '../../hub/config/config.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const OVERLAYS = ['dev', 'production'];

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;

/** Renders an overlay with `kubectl kustomize` (infra/local/up.sh installs Debian's kubectl when none is there). */
function render(overlay: string): Obj[] {
  const r = spawnSync('kubectl', ['kustomize', join(ROOT, 'infra/k8s/overlays', overlay)], { encoding: 'utf8' });
  if (r.error) throw new Error(`kubectl could not run (${r.error.message}); infra/local/up.sh installs it (Debian package kubernetes-client)`);
  assert.equal(r.status, 0, `kubectl kustomize ${overlay} failed:\n${r.stderr}`);
  return parseAllDocuments(r.stdout).map((d) => d.toJSON() as Obj).filter(Boolean);
}

/** The kubernetes-models class for an object (core group `v1`, others `group/version`). */
async function modelFor(o: Obj): Promise<new (data: Obj) => { validate(): void }> {
  const mod = (await import(`kubernetes-models/${o.apiVersion}/${o.kind}`)) as Record<string, new (data: Obj) => { validate(): void }>;
  const cls = mod[o.kind];
  assert.ok(cls, `no kubernetes-models class for ${o.apiVersion} ${o.kind}`);
  return cls;
}

const find = (objs: Obj[], kind: string, name: string) => {
  const o = objs.find((x) => x.kind === kind && x.metadata?.name === name);
  assert.ok(o, `${kind}/${name} missing from the rendered manifests`);
  return o!;
};

/**
 * infra/k8s rendered by a real kustomize (kubectl's) and every object validated against the
 * Kubernetes OpenAPI schemas that the kubernetes-models package ships. Those schemas check types,
 * enums and required fields but accept unknown keys, so the settings that matter (probes, security
 * context, selectors) are also asserted by value below: a misspelt key there fails as "missing".
 */
describe('kubernetes manifests', () => {
  const rendered = new Map<string, Obj[]>();
  before(() => {
    for (const o of OVERLAYS) rendered.set(o, render(o));
  });

  it('k8s - every rendered object of every overlay passes the Kubernetes schema', async () => {
    for (const [overlay, objs] of rendered) {
      assert.ok(objs.length >= 10, `${overlay}: only ${objs.length} objects`);
      for (const o of objs) {
        const Model = await modelFor(o);
        assert.doesNotThrow(() => new Model(o).validate(), `${overlay}: ${o.kind}/${o.metadata?.name}`);
      }
    }
    // Negative control: the same validator refuses a wrong type.
    const hub = structuredClone(find(rendered.get('production')!, 'Deployment', 'orghub-hub'));
    hub.spec.replicas = 'three';
    const Model = await modelFor(hub);
    assert.throws(() => new Model(hub).validate(), /replicas/);
  });

  it('k8s - the hub: Deployment with probes on /ready and /health (on the ops port, which the Service leaves out), preStop, HPA and PDB that select it', () => {
    for (const [overlay, objs] of rendered) {
      const dep = find(objs, 'Deployment', 'orghub-hub');
      const c = dep.spec.template.spec.containers.find((x: Obj) => x.name === 'hub');
      assert.equal(c.readinessProbe.httpGet.path, '/ready', overlay);
      assert.equal(c.livenessProbe.httpGet.path, '/health', overlay);
      const cfg = find(objs, 'ConfigMap', 'orghub-config').data;
      const ops = c.ports.find((p: Obj) => p.name === 'ops');
      assert.equal(String(ops?.containerPort), cfg.ORGHUB_OPS_PORT, `${overlay}: the ops container port is ORGHUB_OPS_PORT`);
      assert.deepEqual([c.readinessProbe.httpGet.port, c.livenessProbe.httpGet.port], ['ops', 'ops'], overlay);
      assert.ok(c.lifecycle.preStop.exec.command.length > 0, `${overlay}: preStop`);
      assert.ok(dep.spec.template.spec.terminationGracePeriodSeconds > 10, `${overlay}: grace period must outlast preStop`);
      assert.deepEqual(c.command, ['node', '--import', 'tsx', 'hub/main.ts']);
      const labels = dep.spec.template.metadata.labels;
      const hpa = find(objs, 'HorizontalPodAutoscaler', 'orghub-hub');
      assert.deepEqual([hpa.spec.scaleTargetRef.kind, hpa.spec.scaleTargetRef.name], ['Deployment', 'orghub-hub']);
      assert.ok(hpa.spec.minReplicas >= 1 && hpa.spec.maxReplicas > hpa.spec.minReplicas, overlay);
      const pdb = find(objs, 'PodDisruptionBudget', 'orghub-hub');
      for (const [k, v] of Object.entries(pdb.spec.selector.matchLabels)) assert.equal(labels[k], v, `${overlay}: PDB selector ${k}`);
      const svc = find(objs, 'Service', 'orghub-hub');
      for (const [k, v] of Object.entries(svc.spec.selector)) assert.equal(labels[k], v, `${overlay}: Service selector ${k}`);
      // Positive control: the Service does route the tenants' port; never the ops port.
      const routed = svc.spec.ports.map((p: Obj) => p.targetPort);
      assert.ok(routed.includes('http'), overlay);
      assert.ok(!routed.includes('ops') && !svc.spec.ports.some((p: Obj) => String(p.port) === cfg.ORGHUB_OPS_PORT), `${overlay}: the Service must not expose the ops port`);
    }
    assert.ok(find(rendered.get('production')!, 'HorizontalPodAutoscaler', 'orghub-hub').spec.minReplicas >= 3);
  });

  it('k8s - every pod is non-root with seccomp RuntimeDefault; every container read-only, no escalation, all capabilities dropped', () => {
    for (const [overlay, objs] of rendered) {
      const deps = objs.filter((o) => o.kind === 'Deployment');
      assert.deepEqual(deps.map((d) => d.metadata.name).sort(), ['orghub-hub', 'orghub-projector']);
      for (const d of deps) {
        const pod = d.spec.template.spec;
        const where = `${overlay} ${d.metadata.name}`;
        assert.equal(pod.securityContext.runAsNonRoot, true, where);
        assert.ok(pod.securityContext.runAsUser > 0, where);
        assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault', where);
        assert.equal(pod.automountServiceAccountToken, false, where);
        for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
          const sc = c.securityContext;
          assert.equal(sc.readOnlyRootFilesystem, true, `${where}/${c.name}`);
          assert.equal(sc.allowPrivilegeEscalation, false, `${where}/${c.name}`);
          assert.equal(sc.runAsNonRoot, true, `${where}/${c.name}`);
          assert.deepEqual(sc.capabilities.drop, ['ALL'], `${where}/${c.name}`);
          assert.ok(c.volumeMounts.some((m: Obj) => m.mountPath === '/tmp'), `${where}/${c.name}: tsx needs a writable /tmp`);
        }
      }
      const projector = find(objs, 'Deployment', 'orghub-projector').spec.template.spec.containers[0];
      assert.deepEqual(projector.command, ['node', '--import', 'tsx', 'projections/main.ts']);
    }
  });

  it('k8s - ConfigMap keys are real settings, the Secret holds only placeholders, NetworkPolicies cover every orghub pod', () => {
    for (const [overlay, objs] of rendered) {
      const cm = find(objs, 'ConfigMap', 'orghub-config');
      const unknown = Object.keys(cm.data).filter((k) => !(k in settings));
      assert.deepEqual(unknown, [], `${overlay}: ConfigMap keys that hub/config/config.ts does not know`);
      const secret = find(objs, 'Secret', 'orghub-secrets');
      const values = Object.values<string>(secret.stringData ?? {}).concat(Object.values<string>(secret.data ?? {}).map((v) => Buffer.from(v, 'base64').toString()));
      assert.ok(values.length > 0, `${overlay}: the Secret names what the hub needs`);
      for (const v of values) assert.match(v, /REPLACE_ME/, `${overlay}: a Secret value is not a placeholder`);
      const policies = objs.filter((o) => o.kind === 'NetworkPolicy');
      const deny = policies.find((p) => p.spec.podSelector.matchLabels?.['app.kubernetes.io/part-of'] === 'orghub');
      assert.ok(deny && !deny.spec.ingress && !deny.spec.egress, `${overlay}: a default-deny policy for orghub pods`);
      assert.deepEqual(deny!.spec.policyTypes, ['Ingress', 'Egress']);
      for (const d of objs.filter((o) => o.kind === 'Deployment')) {
        const labels = d.spec.template.metadata.labels;
        const own: Obj[] = policies.filter((p) => p !== deny && Object.entries(p.spec.podSelector.matchLabels ?? {}).every(([k, v]) => labels[k] === v));
        assert.equal(own.length, 1, `${overlay}: one allow policy for ${d.metadata.name}`);
      }
      assert.ok(objs.every((o) => o.kind === 'Namespace' || o.metadata.namespace === (overlay === 'dev' ? 'orghub-dev' : 'orghub')), `${overlay}: namespace`);
    }
  });

  it('k8s - NATS values for the official chart: a three-node cluster with JetStream (documented, not vendored)', () => {
    const values = parse(readFileSync(join(ROOT, 'infra/k8s/nats/values.yaml'), 'utf8'));
    assert.equal(values.config.cluster.enabled, true);
    assert.equal(values.config.cluster.replicas, 3);
    assert.equal(values.config.jetstream.enabled, true);
    const cm = find(rendered.get('production')!, 'ConfigMap', 'orghub-config');
    assert.equal(cm.data.NATS_URL, 'nats://nats:4222', 'points at the chart release "nats"');
  });
});
