// The embedded models in weights/: each file is what its manifest says (sha256), loads strictly with its shipped
// config, and the classifier reproduces the clean accuracy the score manifest recorded for the first 200 test images.
// (The 10,000-image accuracy and the purified accuracies are reproduced by the README's documented commands: minutes.)

import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { noGrad } from '../../src/autograd/index.js';
import { FASHION_MNIST_DIR, loadMnistLike } from '../../src/diffpure/data/idx.js';
import { loadNetwork } from '../../src/diffpure/models.js';
import { argmax, fromArray } from '../../src/tensor/index.js';

const json = (p: string) => JSON.parse(readFileSync(p, 'utf8'));

describe('weights/', () => {
  test.each(['fmnist-classifier', 'fmnist-score'])('%s: sha256 as in its manifest, loads strictly', async (name) => {
    const manifest = json(`weights/${name}.json`);
    const file = readFileSync(`weights/${name}.safetensors`);
    expect(createHash('sha256').update(file).digest('hex')).toBe(manifest.sha256);
    const kind = name === 'fmnist-score' ? 'ddpmpp' : 'wrn';
    const net = await loadNetwork(kind, json(`weights/${name}.config.json`), `weights/${name}.safetensors`);
    // the manifest counts every state-dict element (weights and BatchNorm buffers)
    expect([...net.module.stateDict()].reduce((a, [, t]) => a + t.size, 0)).toBe(manifest.parameters);
    net.module.dispose();
  });

  test.skipIf(!existsSync(FASHION_MNIST_DIR))(
    'the classifier reads the first 200 test images as the score manifest recorded',
    async () => {
      const manifest = json('weights/fmnist-score.json');
      const sha = json('weights/fmnist-classifier.json').sha256;
      const rec = (
        manifest.metrics.evaluations as { classifierSha256: string; testImages: number; classifierAccuracy: number }[]
      ).find((e) => e.classifierSha256 === sha && e.testImages === 200);
      expect(rec, 'an evaluation of the shipped classifier on 200 images').toBeDefined();
      const net = await loadNetwork(
        'wrn',
        json('weights/fmnist-classifier.config.json'),
        'weights/fmnist-classifier.safetensors',
      );
      const d = loadMnistLike('test', FASHION_MNIST_DIR, 200);
      const pred = noGrad(() => argmax(net.forward(fromArray(d.images, d.shape)), 1));
      const p = pred.dataSync();
      let k = 0;
      for (let i = 0; i < 200; i++) if (p[i] === d.labels[i]) k++;
      pred.dispose();
      net.module.dispose();
      expect(k / 200).toBe(rec?.classifierAccuracy);
    },
  );
});
