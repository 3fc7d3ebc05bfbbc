import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { errno, ErrnoError } from '@p2p/errno';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { buildTopology } from './build-topology';
import type { Topology } from './topology';
import { TopologySchema } from './topology-schema';

export type TopologyFormat = 'yaml' | 'json';

/** "hostBridges[0].rootPorts[1].bdf" from a zod issue path. */
function fieldPath(path: readonly PropertyKey[]): string {
  return path
    .map((key, i) => (typeof key === 'number' ? `[${key}]` : `${i === 0 ? '' : '.'}${String(key)}`))
    .join('');
}

function describeIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues.map((issue) => `${fieldPath(issue.path) || '(top level)'}: ${issue.message}`).join('; ');
}

/** Validates an already-parsed document (a YAML/JSON tree or a literal). EINVAL names each bad field. */
export function topologyFromObject(document: unknown): Topology {
  const result = TopologySchema.safeParse(document);
  if (!result.success) {
    throw errno('EINVAL', `invalid topology: ${describeIssues(result.error.issues)}`);
  }
  return buildTopology(result.data);
}

/** Parses topology text. JSON is a subset of YAML, but JSON.parse gives JSON's own error positions. */
export function parseTopology(text: string, format: TopologyFormat = 'yaml'): Topology {
  let document: unknown;
  try {
    document = format === 'json' ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw errno('EINVAL', `topology is not valid ${format.toUpperCase()}: ${reason}`);
  }
  return topologyFromObject(document);
}

/** Reads a topology file; ".json" is parsed as JSON, anything else as YAML. */
export function loadTopologyFile(path: string): Topology {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw code === 'ENOENT' || code === 'EACCES'
      ? new ErrnoError(code, `cannot read topology file ${path}`)
      : errno('EIO', `cannot read topology file ${path}: ${String(error)}`);
  }
  return parseTopology(text, extname(path).toLowerCase() === '.json' ? 'json' : 'yaml');
}
