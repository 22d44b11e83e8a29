/**
 * Small pieces every client in this package needs: messages to the bus daemon itself, property
 * reads, D-Bus error names, and turning dbus-next's `Variant`s into plain values.
 */

import { isSluiceError } from '@sluice/core';
import { Message, type MessageBus, Variant } from 'dbus-next';
import { type CallOptions, callMethod } from './bus.js';

/** The bus daemon's own name, path and interface. */
export const DBUS_NAME = 'org.freedesktop.DBus';
/** The object path of the bus daemon. */
export const DBUS_PATH = '/org/freedesktop/DBus';
/** The standard properties interface. */
export const PROPERTIES_INTERFACE = 'org.freedesktop.DBus.Properties';

/** A method call to the bus daemon itself (`AddMatch`, `GetNameOwner`, ...). */
export function busMethod(member: string, signature: string, body: unknown[]): Message {
  return new Message({
    destination: DBUS_NAME,
    path: DBUS_PATH,
    interface: DBUS_NAME,
    member,
    signature,
    body,
  });
}

/** `AddMatch(rule)`: have the bus daemon route the signals the rule matches to this connection. */
export function addMatch(rule: string): Message {
  return busMethod('AddMatch', 's', [rule]);
}

/** The match rule for `NameOwnerChanged` of one well-known name. */
export function nameOwnerChangedRule(name: string): string {
  return `type='signal',sender='${DBUS_NAME}',path='${DBUS_PATH}',interface='${DBUS_NAME}',member='NameOwnerChanged',arg0='${name}'`;
}

/** The D-Bus error name behind a SluiceError from {@link callMethod}, such as `...ServiceUnknown`. */
export function dbusErrorName(error: unknown): string | undefined {
  if (!isSluiceError(error) || !(error.cause instanceof Error)) return undefined;
  const type = Reflect.get(error.cause, 'type');
  return typeof type === 'string' ? type : undefined;
}

/** True when nobody owns the name a call went to (and the bus cannot start it). */
export const isServiceUnknown = (error: unknown): boolean =>
  dbusErrorName(error) === 'org.freedesktop.DBus.Error.ServiceUnknown';

/** True when `GetNameOwner` found nobody owning the name. */
export const isNoOwner = (error: unknown): boolean =>
  dbusErrorName(error) === 'org.freedesktop.DBus.Error.NameHasNoOwner';

/** True for the errors a peer answers when it lacks a method or property: an older version. */
export const isUnknownMember = (error: unknown): boolean => {
  const name = dbusErrorName(error);
  return (
    name === 'org.freedesktop.DBus.Error.UnknownMethod' ||
    name === 'org.freedesktop.DBus.Error.UnknownProperty' ||
    name === 'org.freedesktop.DBus.Error.UnknownInterface' ||
    name === 'org.freedesktop.DBus.Error.InvalidArgs'
  );
};

/**
 * Reads one property with `org.freedesktop.DBus.Properties.Get` and returns its value, unwrapped
 * from its variant.
 *
 * @throws SluiceError as {@link callMethod} does.
 */
export async function getProperty(
  bus: MessageBus,
  destination: string,
  path: string,
  iface: string,
  property: string,
  options: CallOptions = {},
): Promise<unknown> {
  const reply = await callMethod(
    bus,
    new Message({
      destination,
      path,
      interface: PROPERTIES_INTERFACE,
      member: 'Get',
      signature: 'ss',
      body: [iface, property],
    }),
    options,
  );
  return unwrap(reply.body[0]);
}

/** The message for `org.freedesktop.DBus.Properties.GetAll(iface)`. */
export function getAllMessage(destination: string, path: string, iface: string): Message {
  return new Message({
    destination,
    path,
    interface: PROPERTIES_INTERFACE,
    member: 'GetAll',
    signature: 's',
    body: [iface],
  });
}

/**
 * Turns what dbus-next delivers into plain values: variants become their values, recursively
 * through arrays and dictionaries. 64-bit integers stay BigInt.
 */
export function unwrap(value: unknown): unknown {
  if (value instanceof Variant) return unwrap(value.value);
  if (Array.isArray(value)) return value.map(unwrap);
  if (value !== null && typeof value === 'object' && !Buffer.isBuffer(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = unwrap(v);
    return out;
  }
  return value;
}
