import * as path from 'node:path';
import * as protoLoader from '@grpc/proto-loader';
import { dmabuf, fault, iommufd, pci, PROTO_FILES, PROTO_ROOT, rdma, vfio } from '@p2p/proto';

/** What the fuzzer needs of a ts-proto message: defaults, and a way to fill them in. */
export interface MessageFns {
  fromPartial(object: object): object;
}

/** A scalar type as descriptor.proto names it, less the TYPE_ prefix, lower case. */
export type Scalar =
  | 'double'
  | 'float'
  | 'int32'
  | 'uint32'
  | 'sint32'
  | 'fixed32'
  | 'sfixed32'
  | 'int64'
  | 'uint64'
  | 'sint64'
  | 'fixed64'
  | 'sfixed64'
  | 'bool'
  | 'string'
  | 'bytes';

export type FieldShape =
  /** `optional`: a proto3 optional scalar, which may be left unset. */
  | { readonly name: string; readonly repeated: boolean; readonly optional: boolean; readonly kind: 'scalar'; readonly scalar: Scalar }
  | { readonly name: string; readonly repeated: boolean; readonly optional: boolean; readonly kind: 'enum'; readonly values: readonly number[] }
  | { readonly name: string; readonly repeated: boolean; readonly optional: boolean; readonly kind: 'message'; readonly message: () => MessageShape };

/** A message as the fuzzer builds it: plain fields, and at most one oneof (ts-proto's `{ $case, value }`). */
export interface MessageShape {
  readonly name: string;
  readonly fields: readonly FieldShape[];
  readonly oneof: { readonly name: string; readonly members: readonly FieldShape[] } | undefined;
  readonly fns: MessageFns;
}

/** One method of one service, paired with the ts-proto entry that calls it. */
export interface MethodShape {
  /** `p2p.pci.v1.PciEmuService` */
  readonly service: string;
  /** `GetFunction` */
  readonly name: string;
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  readonly requestSerialize: (value: object) => Buffer;
  readonly responseDeserialize: (bytes: Buffer) => unknown;
  readonly request: MessageShape;
}

interface FieldDescriptor {
  name: string;
  label: string;
  type: string;
  typeName: string;
}

interface DescriptorType {
  field?: FieldDescriptor[];
  oneofDecl?: Array<{ name: string }>;
  value?: Array<{ number: number }>;
}

interface GeneratedMethod {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestSerialize: (value: never) => Buffer;
  responseDeserialize: (bytes: Buffer) => unknown;
}

/** The generated modules by proto package (one per .proto file: p2p.vfio.v1 has two), and the service definitions the fuzzer calls. */
const MODULES: Readonly<Record<string, readonly object[]>> = {
  'p2p.pci.v1': [pci],
  'p2p.vfio.v1': [vfio, iommufd],
  'p2p.dmabuf.v1': [dmabuf],
  'p2p.rdma.v1': [rdma],
  'p2p.fault.v1': [fault],
};
const SERVICES: ReadonlyArray<readonly [string, Record<string, GeneratedMethod>]> = [
  ['p2p.pci.v1.PciEmuService', pci.PciEmuServiceService],
  ['p2p.dmabuf.v1.DmaBufRegistryService', dmabuf.DmaBufRegistryServiceService],
  ['p2p.vfio.v1.VfioPciService', vfio.VfioPciServiceService],
  ['p2p.vfio.v1.VfioDeviceIommufdService', vfio.VfioDeviceIommufdServiceService],
  ['p2p.vfio.v1.IommufdService', iommufd.IommufdServiceService],
  ['p2p.rdma.v1.RdmaNicService', rdma.RdmaNicServiceService],
  ['p2p.rdma.v1.RdmaWireService', rdma.RdmaWireServiceService],
  ['p2p.fault.v1.FaultInjectionService', fault.FaultInjectionServiceService],
];

function loadProtoFiles(): protoLoader.PackageDefinition {
  return protoLoader.loadSync(
    Object.values(PROTO_FILES).map((file) => path.join(PROTO_ROOT, file)),
    { includeDirs: [PROTO_ROOT] },
  );
}

/**
 * The path of every method of every service the .proto files declare
 * (`/p2p.pci.v1.PciEmuService/GetFunction`), read from the sources
 * themselves: what loadMethods() must cover.
 */
export function declaredMethodPaths(): string[] {
  const paths: string[] = [];
  for (const [name, definition] of Object.entries(loadProtoFiles())) {
    // Messages and enums carry a descriptor `format`; services are their methods by name.
    if (!name.startsWith('p2p.') || 'format' in definition) continue;
    for (const method of Object.values(definition as Record<string, { path: string }>)) paths.push(method.path);
  }
  return paths;
}

/**
 * Every method of every service, read from the generated service
 * definitions; field types come from the .proto descriptors (ts-proto keeps
 * none at run time), and oneof membership from ts-proto's own defaults: a
 * oneof's members are the descriptor fields fromPartial({}) has no key for.
 */
export function loadMethods(): MethodShape[] {
  const definitions = loadProtoFiles();
  const messages = new Map<string, MessageShape>();

  const typeOf = (fullName: string): DescriptorType => {
    const definition = definitions[fullName] as { type?: DescriptorType } | undefined;
    if (definition?.type === undefined) throw new Error(`fuzz schema: no descriptor for ${fullName}`);
    return definition.type;
  };
  const qualify = (pkg: string, typeName: string): string => (typeName.includes('.') ? typeName.replace(/^\./, '') : `${pkg}.${typeName}`);

  const messageShape = (fullName: string): MessageShape => {
    const known = messages.get(fullName);
    if (known) return known;
    const pkg = fullName.slice(0, fullName.lastIndexOf('.'));
    const name = fullName.slice(pkg.length + 1);
    const fns = (MODULES[pkg] ?? []).map((module) => (module as Record<string, MessageFns | undefined>)[name]).find((found) => found?.fromPartial !== undefined);
    if (fns === undefined) throw new Error(`fuzz schema: no ts-proto message ${name} in ${pkg}`);
    const defaults = fns.fromPartial({}) as Record<string, unknown>;
    const descriptor = typeOf(fullName);
    const fields: FieldShape[] = [];
    const members: FieldShape[] = [];
    for (const field of descriptor.field ?? []) {
      const repeated = field.label === 'LABEL_REPEATED';
      // A scalar ts-proto defaults to undefined is proto3 `optional`; message fields default to undefined as well (useOptionals=messages), and are left out or filled by the generator.
      const common = { name: field.name, repeated, optional: field.type !== 'TYPE_MESSAGE' && field.name in defaults && defaults[field.name] === undefined };
      let shape: FieldShape;
      if (field.type === 'TYPE_MESSAGE') {
        const target = qualify(pkg, field.typeName);
        shape = { ...common, kind: 'message', message: () => messageShape(target) };
      } else if (field.type === 'TYPE_ENUM') {
        shape = { ...common, kind: 'enum', values: (typeOf(qualify(pkg, field.typeName)).value ?? []).map((v) => v.number) };
      } else {
        shape = { ...common, kind: 'scalar', scalar: field.type.replace(/^TYPE_/, '').toLowerCase() as Scalar };
      }
      (field.name in defaults ? fields : members).push(shape);
    }
    const fieldNames = new Set((descriptor.field ?? []).map((f) => f.name));
    const oneofNames = Object.keys(defaults).filter((key) => !fieldNames.has(key));
    if (oneofNames.length > 1 || (members.length > 0) !== (oneofNames.length === 1)) {
      throw new Error(`fuzz schema: ${fullName} has oneofs ${oneofNames.join(', ')} and members ${members.map((m) => m.name).join(', ')}; one oneof per message is all this reads`);
    }
    const shape: MessageShape = { name: fullName, fields, oneof: oneofNames.length === 1 ? { name: oneofNames[0]!, members } : undefined, fns };
    messages.set(fullName, shape);
    return shape;
  };

  const methods: MethodShape[] = [];
  for (const [service, generated] of SERVICES) {
    const pkg = service.slice(0, service.lastIndexOf('.'));
    const loaded = definitions[service] as Record<string, { path: string; requestType: { type: { name: string } } }> | undefined;
    if (loaded === undefined) throw new Error(`fuzz schema: ${service} is not in the .proto files`);
    const byPath = new Map(Object.values(loaded).map((m) => [m.path, m.requestType.type.name]));
    for (const method of Object.values(generated)) {
      const requestName = byPath.get(method.path);
      if (requestName === undefined) throw new Error(`fuzz schema: ${method.path} is not in the .proto files`);
      methods.push({
        service,
        name: method.path.slice(method.path.lastIndexOf('/') + 1),
        path: method.path,
        requestStream: method.requestStream,
        responseStream: method.responseStream,
        requestSerialize: method.requestSerialize as (value: object) => Buffer,
        responseDeserialize: method.responseDeserialize,
        request: messageShape(`${pkg}.${requestName}`),
      });
    }
  }
  return methods;
}
