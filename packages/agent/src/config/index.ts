/**
 * The agent's configuration: one schema, read from several places. From lowest to highest
 * precedence:
 *
 * 1. built-in defaults;
 * 2. locksmith's update.conf files (`/etc/coreos/update.conf`, then `/etc/flatcar/update.conf`),
 *    so a node that ran locksmithd keeps its strategy, window and etcd connection;
 * 3. the YAML file (`/etc/sluice/sluiced.yaml`, or `--config` / `SLUICE_CONFIG`);
 * 4. environment variables (`SLUICE_*`, and locksmith's `LOCKSMITHD_*` names for etcd);
 * 5. command-line flags.
 *
 * Every layer is validated on its own, so a bad value is reported even when a higher layer
 * overrides it, and every error names the key and where it came from:
 * `config file /etc/sluice/sluiced.yaml: checks.pre[0].timeout: expected a duration like 30s,
 * got "soon"`. Unknown keys in the file are errors, with a suggestion for likely typos.
 *
 * The YAML file uses camelCase keys; every key is optional. Durations are Go durations (`30s`,
 * `1h30m`). A complete example with the defaults spelt out:
 *
 * ```yaml
 * node:
 *   id: web-17                # default: the contents of /etc/machine-id
 *   hostname: web-17.example  # default: the host name
 *   domain: rack-12           # failure domain counted by the group's domain-max; default none
 *   tokenFile: /var/lib/sluice/instance  # this agent's instance token (made at first start)
 * clock:
 *   maxSkew: 60s              # no admission, no reboot while the clock is further off etcd's
 * etcd:
 *   endpoints: [https://10.0.0.1:2379, https://10.0.0.2:2379]  # or "a,b"; default http://127.0.0.1:2379
 *   cacert: /etc/sluice/etcd-ca.pem        # alone: TLS that verifies the server only
 *   cert: /etc/sluice/etcd-client.pem      # cert and key: mutual TLS
 *   key: /etc/sluice/etcd-client-key.pem
 *   username: sluice
 *   passwordFile: /etc/sluice/etcd-password # or password: ... (never logged)
 *   prefix: /sluice/v1/
 *   group: web
 *   sessionTTL: 30s   # lease of a waiting node's queue key (whole seconds)
 *   holdTTL: 1h       # lease of a slot while the node reboots; must outlast the reboot
 * strategy: etcd-lock # etcd-lock | reboot | off | best-effort (locksmith's: etcd-lock if etcd is configured)
 * windowZone: Europe/Berlin   # zone of window entries that name none, or local (this node's
 *                             # zone); default UTC, and local for locksmith's { start, length }
 * windows:                    # a spec string, a list of them, or locksmith's { start, length }
 *   - Mon-Fri 22:00-02:00
 *   - Sat,Sun 03:00+4h UTC
 *   - { start: "Thu 04:00", length: 1h30m }
 * sources:
 *   updateEngine: true            # follow update_engine over D-Bus
 *   sentinel: /run/reboot-required # null or "off" to ignore
 *   command: { run: /usr/local/bin/needs-reboot, interval: 5m }  # exit 0 = reboot needed; default null
 *   manual: true                  # honour `sluicectl request-reboot`
 *   rpmOstree: false              # follow rpm-ostreed over D-Bus (Fedora CoreOS, RHEL for Edge)
 *   bootc: false                  # or true, or { interval: 5m, path: /usr/bin/bootc, timeout: 2m }
 *   sysupdate: false              # systemd-sysupdate pending; also takes component: NAME
 *   needrestart: false            # needrestart -b (Debian, Ubuntu)
 *   dnf: false                    # dnf needs-restarting -r (Fedora, RHEL)
 * reboot:
 *   method: logind                # logind | soft-reboot | kexec | command
 *   command: systemctl reboot     # used when method is command
 *   softReboot: auto              # auto: soft-reboot when the source says userspace is enough; never
 *   inhibitors: wait              # wait: hold off while a block inhibitor lock is on shutdown; ignore
 *   inhibitorWait: 10m            # longest such wait, holding the slot; then it is given back
 *   loopLimit: 3                  # stop rebooting for an update still needed after 3 reboots; 0 = off
 *   warnDelay: 0s                 # warn logged-in users this long before rebooting
 *   expectedSlot: auto            # admission to release must fit before the window closes; auto:
 *                                 # this node's past slots (history), or a duration, or off
 *   warnMessage: "System reboot in %s: OS update applied (sluice)"
 * checks:
 *   pre:                          # before queueing and again once admitted; all must pass
 *     - { name: low-traffic, prometheus: "http://prom:9090", query: "sum(rate(http_requests_total[5m])) > 100", timeout: 10s }
 *     - { command: /usr/local/bin/ok-to-reboot, timeout: 30s }
 *   drain: { command: "kubectl drain --ignore-daemonsets $(hostname)", timeout: 10m }
 *   post:                         # after boot, retried until they pass or postDeadline passes
 *     - { name: app, http: "http://127.0.0.1:8080/healthz", timeout: 5s }
 *   postDeadline: 10m
 *   postInterval: 10s
 *   releaseDelay: 0s              # wait this long after the post checks pass before releasing
 * dbus:
 *   address: system               # or unix:path=/run/dbus/system_bus_socket
 * metrics:
 *   listen: 127.0.0.1:9466        # null or "off" disables; a non-loopback host needs allowRemote
 *   allowRemote: false
 * log:
 *   level: info                   # debug | info | warn | error
 * notify:                         # YAML only; see notify.ts
 *   webhooks: [https://hooks.example/T0/B0/xyz]   # POST a JSON notification to each
 *   template: '{"text": "{{text}}"}'              # default: the notification itself as JSON
 *   events: [group-halted, node-lost, post-checks-failing, rollout-finished, group-paused, group-resumed]
 *   timeout: 10s                  # per attempt
 *   attempts: 5
 * ```
 *
 * A check is `{ command }`, `{ http }` (GET, 2xx passes) or `{ prometheus, query }` (passes when
 * the instant query returns nothing or only zeros), each with an optional `name` and `timeout`
 * (default 30s). Window specs follow `parseWindowSpec` in `@sluice/core`; all entries together
 * form the node's one window spec, which is open when any entry is.
 *
 * Environment variables and flags are listed in `AGENT_FLAGS` (and `agentFlagsHelp()`).
 */

export {
  describeConfig,
  parseListenAddress,
  redactConfig,
  type SettingReport,
} from './describe.js';
export { MAX_CONFIG_DEPTH, MAX_CONFIG_FILE_BYTES } from './fields.js';
export {
  AGENT_FLAGS,
  type AgentFlagSpec,
  type AgentFlags,
  addAgentFlags,
  agentFlagsHelp,
} from './flags.js';
export type { LoadOptions } from './layers.js';
export { loadAgentConfig, type WindowZones } from './load.js';
export { settingsReference } from './reference.js';
export { type AgentConfigFile, AgentConfigFileSchema } from './schema.js';
export {
  type AgentConfig,
  type CheckSpec,
  type CheckSpecCommand,
  type CheckSpecHttp,
  type CheckSpecPrometheus,
  DEFAULT_CONFIG_FILE,
  DEFAULT_MACHINE_ID_FILE,
  DEFAULT_UPDATE_CONF_FILES,
  type LogLevel,
  type OsSources,
  type PresetConfig,
  type Strategy,
} from './types.js';
