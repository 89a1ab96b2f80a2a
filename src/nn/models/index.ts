// The paper's networks: score models (NCSN++/DDPM++, ADM UNet) and classifiers (WideResNet, ResNet,
// DeiT's VisionTransformer).

export * from './adm.js';
export * from './ncsnpp.js';
export * from './resnet.js';
export * from './vit.js';
export * from './wrn.js';
