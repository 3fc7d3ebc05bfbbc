#!/usr/bin/env node
// @ts-check
/**
 * protoc-gen-api-md: a buf (protoc) plugin that renders the API reference,
 * docs/api.md, from the descriptors and source comments buf hands it: every
 * service and rpc with its request, response and leading comment, every
 * message with its fields, every enum with its values. buf.gen.docs.yaml runs
 * it (`npm run generate`); deploy/scripts/check-generated.sh fails when
 * docs/api.md is stale. Only @bufbuild/protobuf, already @p2p/proto's
 * dependency: the plugin protocol's messages come with its well-known types.
 *
 * Only files of packages named p2p.* are documented; types they use from
 * elsewhere (google.rpc, google.protobuf) are named in full, unlinked.
 */
const { create, fromBinary, isFieldSet, toBinary } = require('@bufbuild/protobuf');
const {
  CodeGeneratorRequestSchema,
  CodeGeneratorResponseSchema,
  CodeGeneratorResponse_Feature,
  FieldDescriptorProtoSchema,
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  MethodOptions_IdempotencyLevel,
} = require('@bufbuild/protobuf/wkt');

/** @typedef {import('@bufbuild/protobuf/wkt').FileDescriptorProto} FileDescriptorProto */
/** @typedef {import('@bufbuild/protobuf/wkt').DescriptorProto} DescriptorProto */
/** @typedef {import('@bufbuild/protobuf/wkt').EnumDescriptorProto} EnumDescriptorProto */
/** @typedef {import('@bufbuild/protobuf/wkt').FieldDescriptorProto} FieldDescriptorProto */

// Field numbers in descriptor.proto: the paths of SourceCodeInfo.Location.
const FILE_PACKAGE = 2;
const FILE_MESSAGE = 4;
const FILE_ENUM = 5;
const FILE_SERVICE = 6;
const FILE_SYNTAX = 12;
const MESSAGE_FIELD = 2;
const MESSAGE_NESTED = 3;
const MESSAGE_ENUM = 4;
const ENUM_VALUE = 2;
const SERVICE_METHOD = 2;

const SCALARS = new Map([
  [FieldDescriptorProto_Type.DOUBLE, 'double'],
  [FieldDescriptorProto_Type.FLOAT, 'float'],
  [FieldDescriptorProto_Type.INT64, 'int64'],
  [FieldDescriptorProto_Type.UINT64, 'uint64'],
  [FieldDescriptorProto_Type.INT32, 'int32'],
  [FieldDescriptorProto_Type.FIXED64, 'fixed64'],
  [FieldDescriptorProto_Type.FIXED32, 'fixed32'],
  [FieldDescriptorProto_Type.BOOL, 'bool'],
  [FieldDescriptorProto_Type.STRING, 'string'],
  [FieldDescriptorProto_Type.BYTES, 'bytes'],
  [FieldDescriptorProto_Type.UINT32, 'uint32'],
  [FieldDescriptorProto_Type.SFIXED32, 'sfixed32'],
  [FieldDescriptorProto_Type.SFIXED64, 'sfixed64'],
  [FieldDescriptorProto_Type.SINT32, 'sint32'],
  [FieldDescriptorProto_Type.SINT64, 'sint64'],
]);

/** The comments of one file, by the path of the declaration they belong to. */
class Comments {
  /** @param {FileDescriptorProto} file */
  constructor(file) {
    /** @type {Map<string, {leading: string, trailing: string}>} */
    this.byPath = new Map();
    for (const location of file.sourceCodeInfo?.location ?? []) {
      this.byPath.set(location.path.join('.'), { leading: clean(location.leadingComments ?? ''), trailing: clean(location.trailingComments ?? '') });
    }
  }

  /** The leading comment of the declaration at `path`, else its trailing one. @param {number[]} path */
  of(path) {
    const found = this.byPath.get(path.join('.'));
    return found === undefined ? '' : found.leading || found.trailing;
  }
}

/** A comment without the space after `//` and without surrounding blank lines. @param {string} text */
function clean(text) {
  return text
    .split('\n')
    .map((line) => line.replace(/^ /, '').trimEnd())
    .join('\n')
    .trim();
}

/** A comment in one table cell. @param {string} text */
function cell(text) {
  return text.replace(/\s*\n\s*/g, ' ').replace(/\|/g, '\\|');
}

/** What a fully qualified type name (".p2p.pci.v1.Foo") is shown and linked as from package `pkg`. */
class Types {
  constructor() {
    /** @type {Map<string, DescriptorProto>} */
    this.messages = new Map();
    /** @type {Set<string>} */
    this.documented = new Set();
  }

  /** @param {string} fullName @param {string} pkg */
  link(fullName, pkg) {
    const name = fullName.replace(/^\./, '');
    const shown = name.startsWith(`${pkg}.`) ? name.slice(pkg.length + 1) : name;
    return this.documented.has(name) ? `[\`${shown}\`](#${anchor(name)})` : `\`${shown}\``;
  }

  /** @param {FieldDescriptorProto} field @param {string} pkg */
  fieldType(field, pkg) {
    const entry = field.typeName ? this.messages.get(field.typeName.replace(/^\./, '')) : undefined;
    if (entry?.options?.mapEntry) {
      const [key, value] = entry.field;
      return `map<${this.fieldType(/** @type {FieldDescriptorProto} */ (key), pkg)}, ${this.fieldType(/** @type {FieldDescriptorProto} */ (value), pkg)}>`;
    }
    const base = field.typeName ? this.link(field.typeName, pkg) : `\`${SCALARS.get(field.type) ?? '?'}\``;
    if (field.label === FieldDescriptorProto_Label.REPEATED) return `repeated ${base}`;
    return field.proto3Optional ? `optional ${base}` : base;
  }
}

/** The anchor of a type or service: its full name, dots as dashes (what every Markdown renderer keeps). @param {string} name */
function anchor(name) {
  return name.toLowerCase().replace(/[^a-z0-9]+/g, '-');
}

/**
 * Every message and enum of a file, nested ones after their parent, with
 * the path of its declaration.
 * @param {FileDescriptorProto} file
 */
function declarations(file) {
  /** @type {Array<{kind: 'message', name: string, desc: DescriptorProto, path: number[]} | {kind: 'enum', name: string, desc: EnumDescriptorProto, path: number[]}>} */
  const out = [];
  /** @param {DescriptorProto} message @param {string} name @param {number[]} path */
  const visit = (message, name, path) => {
    out.push({ kind: 'message', name, desc: message, path });
    message.nestedType.forEach((nested, i) => visit(nested, `${name}.${nested.name}`, [...path, MESSAGE_NESTED, i]));
    message.enumType.forEach((e, i) => out.push({ kind: 'enum', name: `${name}.${e.name}`, desc: e, path: [...path, MESSAGE_ENUM, i] }));
  };
  file.messageType.forEach((message, i) => visit(message, message.name, [FILE_MESSAGE, i]));
  file.enumType.forEach((e, i) => out.push({ kind: 'enum', name: e.name, desc: e, path: [FILE_ENUM, i] }));
  return out;
}

/** @param {FileDescriptorProto[]} files */
function render(files) {
  const types = new Types();
  for (const file of files) {
    for (const d of declarations(file)) {
      const full = `${file.package}.${d.name}`;
      if (d.kind === 'message') types.messages.set(full, d.desc);
      if (!(d.kind === 'message' && d.desc.options?.mapEntry)) types.documented.add(full);
    }
    for (const service of file.service) types.documented.add(`${file.package}.${service.name}`);
  }
  const lines = [
    '# API reference',
    '',
    '<!-- Generated from proto/ by packages/proto/scripts/protoc-gen-api-md.cjs (`npm run generate`); do not edit. -->',
    '',
    'Every service, rpc, message and enum of the buf module in `proto/`, with the comments of the',
    '`.proto` files. Failed calls carry an errno name (see the README, "Errors"); TypeScript clients',
    'of every service are in `@p2p/proto` (`packages/proto`).',
    '',
  ];
  for (const file of files) {
    lines.push(`- [\`${file.name}\`](#${anchor(file.name)}) (package \`${file.package}\`): ${file.service.map((s) => `[${s.name}](#${anchor(`${file.package}.${s.name}`)})`).join(', ') || 'messages only'}`);
  }
  for (const file of files) {
    const pkg = file.package;
    const comments = new Comments(file);
    lines.push('', `## ${file.name}`, '', `<a id="${anchor(file.name)}"></a>Package \`${pkg}\`.`);
    const overview = comments.of([FILE_SYNTAX]) || comments.of([FILE_PACKAGE]);
    if (overview) lines.push('', overview);

    file.service.forEach((service, s) => {
      const full = `${pkg}.${service.name}`;
      lines.push('', `### ${service.name}`, '', `<a id="${anchor(full)}"></a>Service \`${full}\`.`);
      const about = comments.of([FILE_SERVICE, s]);
      if (about) lines.push('', about);
      lines.push('', '| rpc | request | response | |', '| --- | --- | --- | --- |');
      service.method.forEach((method, m) => {
        const request = `${method.clientStreaming ? 'stream ' : ''}${types.link(method.inputType, pkg)}`;
        const response = `${method.serverStreaming ? 'stream ' : ''}${types.link(method.outputType, pkg)}`;
        const notes = [];
        if (method.options?.idempotencyLevel === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS) notes.push('*no side effects*');
        const about = comments.of([FILE_SERVICE, s, SERVICE_METHOD, m]);
        if (about) notes.push(cell(about));
        lines.push(`| \`${method.name}\` | ${request} | ${response} | ${notes.join(' ')} |`);
      });
    });

    for (const d of declarations(file)) {
      const full = `${pkg}.${d.name}`;
      if (d.kind === 'message' && d.desc.options?.mapEntry) continue;
      lines.push('', `### ${d.name}`, '', `<a id="${anchor(full)}"></a>${d.kind === 'message' ? 'Message' : 'Enum'} \`${full}\`.`);
      const about = comments.of(d.path);
      if (about) lines.push('', about);
      if (d.kind === 'message') {
        const message = d.desc;
        if (message.field.length === 0) continue;
        lines.push('', '| field | type | number | |', '| --- | --- | --- | --- |');
        message.field.forEach((field, f) => {
          // oneof_index is a proto2 optional field: 0 when unset, so ask whether it is set.
          const inOneof = isFieldSet(field, FieldDescriptorProtoSchema.field.oneofIndex) && !field.proto3Optional;
          const notes = [inOneof ? `One of \`${message.oneofDecl[field.oneofIndex]?.name}\`.` : '', cell(comments.of([...d.path, MESSAGE_FIELD, f]))];
          lines.push(`| \`${field.name}\` | ${types.fieldType(field, pkg)} | ${field.number} | ${notes.filter(Boolean).join(' ')} |`);
        });
      } else {
        lines.push('', '| value | number | |', '| --- | --- | --- |');
        d.desc.value.forEach((value, v) => lines.push(`| \`${value.name}\` | ${value.number} | ${cell(comments.of([...d.path, ENUM_VALUE, v]))} |`));
      }
    }
  }
  return `${lines.join('\n')}\n`;
}

function main() {
  const request = fromBinary(CodeGeneratorRequestSchema, require('node:fs').readFileSync(0));
  const wanted = new Set(request.fileToGenerate);
  const files = request.protoFile.filter((file) => wanted.has(file.name) && file.package.startsWith('p2p.')).sort((a, b) => a.name.localeCompare(b.name));
  const response = create(CodeGeneratorResponseSchema, {
    supportedFeatures: BigInt(CodeGeneratorResponse_Feature.PROTO3_OPTIONAL),
    file: [{ name: 'api.md', content: render(files) }],
  });
  process.stdout.write(toBinary(CodeGeneratorResponseSchema, response));
}

main();
