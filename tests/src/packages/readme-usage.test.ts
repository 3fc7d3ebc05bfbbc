import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'chai';
import * as ts from 'typescript';

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
/** The packages published to npm: each README's usage must compile against the package as built. */
const PUBLISHED = ['errno', 'status', 'proto', 'auth', 'rpc', 'shm', 'verbs', 'dmabuf-client'];

/** The ```ts blocks of a README, each as a module: its imports on top, the rest inside an async function (the README's top-level await). */
function usageModules(readme: string): string[] {
  return [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map(([, code]) => {
    const lines = code!.split('\n');
    const imports = lines.filter((line) => line.startsWith('import '));
    const body = lines.filter((line) => !line.startsWith('import '));
    return `${imports.join('\n')}\nexport async function usage(): Promise<void> {\n${body.join('\n')}\n}\n`;
  });
}

/**
 * Type-checks each published package's README usage with the compiler the
 * workspace builds with, strictly, resolving `@p2p/*` as a user's
 * node_modules would (package.json "types"): a README that drifted from the
 * API fails here.
 */
describe('the published packages’ README usage compiles', function () {
  this.timeout(120_000);
  let dir: string;
  const files = new Map<string, string>();

  before(() => {
    // Inside the repository, so that module resolution finds its node_modules.
    dir = fs.mkdtempSync(path.join(REPO_ROOT, 'tests', 'dist', 'readme-usage-'));
    for (const name of PUBLISHED) {
      usageModules(fs.readFileSync(path.join(REPO_ROOT, 'packages', name, 'README.md'), 'utf8')).forEach((code, i) => {
        const file = path.join(dir, `${name}-${i}.ts`);
        fs.writeFileSync(file, code);
        files.set(file, name);
      });
    }
  });

  after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const name of PUBLISHED) {
    it(`@p2p/${name}: a README with a usage example that compiles`, () => {
      const own = [...files].filter(([, pkg]) => pkg === name).map(([file]) => file);
      expect(own, `\`\`\`ts blocks in packages/${name}/README.md`).to.not.deep.equal([]);
      const program = ts.createProgram(own, {
        strict: true,
        noEmit: true,
        target: ts.ScriptTarget.ES2022,
        module: ts.ModuleKind.CommonJS,
        moduleResolution: ts.ModuleResolutionKind.Node10,
        esModuleInterop: true,
        skipLibCheck: true,
        types: ['node'],
      });
      const problems = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
      expect(problems).to.deep.equal([]);
    });
  }
});
