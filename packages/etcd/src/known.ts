/**
 * Which groups and nodes exist, for operator commands that must not act on a typo: a group is
 * known when any key sits under its prefix (agents register themselves under `nodes/`), and a
 * node when it is registered, queued or holds a slot in the group. Every query reads keys only,
 * at most one per group, never a group's values.
 */
import { type GroupKeys, groupsPrefix } from '@sluice/core';
import type { Etcd3 } from 'etcd3';
import { etcdCall } from './errors.js';

/** True when any key exists under `<prefix>groups/<group>/`. */
export async function groupExists(client: Etcd3, keys: GroupKeys): Promise<boolean> {
  const found = await etcdCall(`a read of ${keys.root}`, () =>
    client.getAll().prefix(keys.root).limit(1).keys(),
  );
  return found.length > 0;
}

/**
 * The names of the groups that have keys under `<prefix>groups/`, sorted, at most `limit` of
 * them (`more` tells whether there are others). One read per group: each read jumps past the
 * keys of the group it found, so large groups cost nothing extra.
 */
export async function listGroupNames(
  client: Etcd3,
  prefix: string,
  limit = 50,
): Promise<{ names: string[]; more: boolean }> {
  const root = groupsPrefix(prefix);
  // The end of the range: the first key after every key starting with `root`.
  const end = `${root.slice(0, -1)}${String.fromCharCode(root.charCodeAt(root.length - 1) + 1)}`;
  const names: string[] = [];
  let start = root;
  while (names.length <= limit) {
    const from = start;
    const found = await etcdCall(`a read of ${root}`, () =>
      client.getAll().inRange({ start: from, end }).limit(1).keys(),
    );
    const key = found[0];
    if (key === undefined) break;
    const name = key.slice(root.length).split('/')[0] ?? '';
    if (name !== '') names.push(name);
    // "0" follows "/": the next read starts after every key of this group.
    start = `${root}${name}0`;
  }
  const more = names.length > limit;
  return { names: names.slice(0, limit), more };
}

/** True when `node` is registered, queued or holds (or held) a slot in the group. */
export async function nodeKnown(client: Etcd3, keys: GroupKeys, node: string): Promise<boolean> {
  const found = await Promise.all(
    [keys.registration(node), keys.queue(node), keys.holding(node)].map((key) =>
      etcdCall(`a read of ${key}`, () => client.get(key).exists()),
    ),
  );
  return found.some(Boolean);
}
