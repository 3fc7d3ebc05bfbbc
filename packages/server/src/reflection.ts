import type { PackageDefinition } from '@grpc/proto-loader';
import * as descriptor from 'protobufjs/ext/descriptor';

interface MessageDescriptor {
  field?: Array<{ name?: string; typeName?: string; label?: number }>;
  nestedType?: MessageDescriptor[];
  name?: string;
  options?: { mapEntry?: boolean };
}

/**
 * Renames the map-entry types of every file descriptor in `definition` to
 * what protoc names them. protobufjs names the entry of map field `statuses`
 * `Statuses` where protoc (and every reflection client that builds
 * descriptors strictly, such as grpcurl and `buf curl`) expects
 * `StatusesEntry`; with the wrong name those clients reject the whole file,
 * which made grpc.health.v1.Health (its List method returns a map) unknown to
 * them.
 */
export function withProtocMapEntryNames(definition: PackageDefinition): PackageDefinition {
  const fixed = new Map<Buffer, Buffer>();
  const fix = (bytes: Buffer): Buffer => {
    let done = fixed.get(bytes);
    if (!done) {
      const file = descriptor.FileDescriptorProto.decode(bytes) as unknown as { messageType?: MessageDescriptor[] };
      let changed = false;
      for (const message of file.messageType ?? []) changed = renameMapEntries(message) || changed;
      done = changed ? Buffer.from(descriptor.FileDescriptorProto.encode(file as never).finish()) : bytes;
      fixed.set(bytes, done);
    }
    return done;
  };
  for (const object of Object.values(definition)) {
    if ('fileDescriptorProtos' in object && Array.isArray(object.fileDescriptorProtos)) {
      object.fileDescriptorProtos = object.fileDescriptorProtos.map(fix);
    }
  }
  return definition;
}

function renameMapEntries(message: MessageDescriptor): boolean {
  let changed = false;
  for (const nested of message.nestedType ?? []) {
    changed = renameMapEntries(nested) || changed;
    if (!nested.options?.mapEntry) continue;
    const field = message.field?.find((f) => f.typeName === nested.name && f.label === 3);
    if (!field?.name) continue;
    const entry = `${field.name.replace(/(?:^|_)([a-z0-9])/g, (_, c: string) => c.toUpperCase())}Entry`;
    if (nested.name === entry) continue;
    nested.name = entry;
    field.typeName = entry;
    changed = true;
  }
  return changed;
}
