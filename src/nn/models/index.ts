// The paper's networks: score models (NCSN++/DDPM++, ADM UNet, SDEdit's DDPM UNet) and classifiers (WideResNet,
// ResNet, DeiT's VisionTransformer, gan-ensembling's CelebA-HQ attribute classifier).

export * from './adm.js';
export * from './attribute-classifier.js';
export * from './attribute-net.js';
export * from './ddpm-unet.js';
export * from './ncsnpp.js';
export * from './resnet.js';
export * from './vit.js';
export * from './wrn.js';
