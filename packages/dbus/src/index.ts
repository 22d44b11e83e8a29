/**
 * D-Bus adapters for sluice: follow update_engine's status with {@link UpdateEngineClient}, and
 * reboot through systemd-logind with {@link LogindClient}.
 */

export {
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
  LOGIND_MANAGER_INTERFACE,
  LOGIND_NAME,
  LOGIND_PATH,
  LogindClient,
  type LogindClientOptions,
} from './logind.js';
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
