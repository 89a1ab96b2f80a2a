// The paper's networks: score models (NCSN++/DDPM++, ADM UNet) and classifiers (WideResNet, ResNet).

export * from './adm.js';
export * from './ncsnpp.js';
export * from './resnet.js';
export * from './wrn.js';
