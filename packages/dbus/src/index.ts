/**
 * D-Bus adapters for sluice: follow update_engine's status with {@link UpdateEngineClient} and
 * rpm-ostreed's deployments with {@link RpmOstreeClient}; reboot (fully, soft or through kexec),
 * list inhibitor locks and schedule the users' warning through systemd-logind with
 * {@link LogindClient}; read systemd's soft-reboot count with {@link SystemdClient}.
 */

export {
  abortedError,
  type BusAddress,
  type CallOptions,
  callMethod,
  closeBus,
  connectBus,
  DEFAULT_CALL_TIMEOUT_MS,
  DEFAULT_CONNECT_TIMEOUT_MS,
  onBusClosed,
} from './bus.js';
export {
  addMatch,
  busMethod,
  DBUS_NAME,
  DBUS_PATH,
  dbusErrorName,
  getAllMessage,
  getProperty,
  isNoOwner,
  isServiceUnknown,
  isUnknownMember,
  nameOwnerChangedRule,
  PROPERTIES_INTERFACE,
  unwrap,
} from './helpers.js';
export {
  type Inhibitor,
  LOGIND_MANAGER_INTERFACE,
  LOGIND_NAME,
  LOGIND_PATH,
  LogindClient,
  type LogindClientOptions,
  REBOOT_FLAGS,
} from './logind.js';
export { type PeerCall, PeerConnection } from './peer.js';
export {
  type Deployment,
  parseDeployments,
  pendingDeployment,
  RPMOSTREE_NAME,
  RPMOSTREE_OS_INTERFACE,
  RPMOSTREE_SYSROOT_INTERFACE,
  RPMOSTREE_SYSROOT_PATH,
  RPMOSTREE_TRANSACTION_INTERFACE,
  RpmOstreeClient,
  type RpmOstreeClientOptions,
  type RpmOstreeEvents,
  type SysrootStatus,
} from './rpm-ostree.js';
export {
  SYSTEMD_MANAGER_INTERFACE,
  SYSTEMD_NAME,
  SYSTEMD_PATH,
  SystemdClient,
  type SystemdClientOptions,
} from './systemd.js';
export {
  NEED_REBOOT,
  needsReboot,
  parseStatus,
  UPDATE_ENGINE_INTERFACE,
  UPDATE_ENGINE_NAME,
  UPDATE_ENGINE_PATH,
  UpdateEngineClient,
  type UpdateEngineClientOptions,
  type UpdateEngineEvents,
  type UpdateStatus,
} from './update-engine.js';
