export * from './dbus-daemon.js';
export * from './etcd.js';
export * from './fake-logind.js';
export * from './fake-ports.js';
export * from './fake-update-engine.js';
export * from './observer.js';
export * from './proxy.js';
export * from './watch.js';
